"""Over time: trends, spike alerts and their webhook, drift checks, Prometheus metrics."""
