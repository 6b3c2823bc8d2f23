"""reconciler: LLM provider settings and task routes as code."""

__version__ = "0.1.0"
