"""The analysis flow: cache or compute once, fetch, score, aggregate, record; compare, files."""
