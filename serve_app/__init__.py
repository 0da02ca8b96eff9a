"""emotion-monitor: emotion analysis of public posts, served by Ray Serve.

This package holds everything the service needs at run time (no torch): labels, text
preprocessing shared with training, the ONNX predictor, the model registry, settings,
the HTTP schemas and the app builder.
"""

__version__ = "0.1.0"
