"""Ray Serve deployments: thin shells over pure functions in this package."""
