"""The daemon's Prometheus metrics, in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from reconciler.service.ask import Answered


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter(
            "reconciler_reconcile_runs",
            "Reconcile runs by result: applied, unchanged, invalid, refused, source_missing, "
            "error, drift_reported.",
            ["result"],
            registry=r,
        )
        self.duration = Histogram(
            "reconciler_reconcile_duration_seconds",
            "Time from reading the files to the end of the apply.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.changes = Counter(
            "reconciler_changes_applied",
            "Rows changed by applies, by operation.",
            ["op"],
            registry=r,
        )
        self.drift_corrected = Counter(
            "reconciler_drift_corrected", "Rows changed outside the files and put back.", registry=r
        )
        self.last_success = Gauge(
            "reconciler_last_success_timestamp_seconds",
            "When a reconcile last ended with the files applied.",
            registry=r,
        )
        self.config_valid = Gauge(
            "reconciler_config_valid", "1 when the files on disk are valid.", registry=r
        )
        self.generation = Gauge(
            "reconciler_config_generation", "The generation of the applied config.", registry=r
        )
        self.leader = Gauge("reconciler_leader", "1 when this replica reconciles.", registry=r)
        self.task_servable = Gauge(
            "reconciler_task_servable",
            "1 when the task is ready or degraded.",
            ["task", "required"],
            registry=r,
        )
        self.task_status = Gauge(
            "reconciler_task_status",
            "1 for the task's current readiness status.",
            ["task", "status"],
            registry=r,
        )
        self.probe_latency = Histogram(
            "reconciler_probe_latency_seconds",
            "Readiness probe time per provider.",
            ["provider"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.jobs_finished = Counter(
            "reconciler_jobs_finished",
            "Scoring job outcomes: done, retry (a failed attempt), dead.",
            ["result"],
            registry=r,
        )
        self.job_latency = Histogram(
            "reconciler_job_model_latency_seconds",
            "Model call time of scored jobs.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.tokens = Counter(
            "reconciler_model_tokens",
            "Tokens of kept answers by task, provider, model and kind (prompt, completion).",
            ["task", "provider", "model", "kind"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "reconciler_queue_jobs",
            "Scoring jobs by task and status.",
            ["task", "status"],
            registry=r,
        )

    def answered(self, task: str, answered: Answered) -> None:
        """Count the tokens of an answer kept."""
        for kind, count in (
            ("prompt", answered.prompt_tokens),
            ("completion", answered.completion_tokens),
        ):
            if count:
                self.tokens.labels(task, answered.provider, answered.model, kind).inc(count)

    def job_finished(self, result: str, latency_s: float | None) -> None:
        self.jobs_finished.labels(result).inc()
        if latency_s is not None:
            self.job_latency.observe(latency_s)
