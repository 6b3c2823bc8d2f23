"""The long-running mode: `reconciler run`."""
