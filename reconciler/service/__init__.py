"""The use cases the CLI and the daemon call, one entry point each, over the adapters."""
