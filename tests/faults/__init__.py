"""Server faults under ingest, produced for real: Redis paused and then restarted empty, the database
stopped (PostgreSQL) or locked (SQLite), the web server killed. What a client was told is stored is
stored, once; a dependency down is a 503 with Retry-After; everything recovers by itself."""
