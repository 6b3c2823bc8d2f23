"""Provider adapters: HTTP clients and probes for each provider type."""
