"""Tooling around the service: the `emotion-monitor` CLI, benchmarks, load tests, the local
multi-node cluster and the single-process baseline. The service itself (`serve_app`,
`deployments`) never imports this package; this package may import torch (`training`)."""
