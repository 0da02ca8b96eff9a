"""emotion-monitor's core: a library, torch-free, that imports no Ray Serve deployment.

Subpackages by concern (config, domain, model, sources, stores, counting, explain, flow,
monitoring, lifecycle, api, runtime); the Ray shells and the app builder live in
`deployments/` (docs/architecture.md).
"""

__version__ = "0.1.0"
