"""The HTTP surface below the ingress: the FastAPI app, routers per resource, the page."""
