"""Redis and PostgreSQL: caches, single flight, held records, history, watchlists, pairs."""
