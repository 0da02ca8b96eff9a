"""Running on one machine: the embedded Redis and PostgreSQL, a graceful stop."""
