"""Provider adapters: the HTTP boundary, and a driver per provider type (probe and call)."""
