"""I/O adapters: files, database, provider clients, watcher. They translate third-party errors."""
