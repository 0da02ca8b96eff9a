"""Benchmarks that print tables: every row measured in the same run on this machine, one module per group."""
