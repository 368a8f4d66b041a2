"""SQLite persistence (aiosqlite, WAL): every change, exactly-once copying, safe restarts."""
