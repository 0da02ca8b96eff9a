"""Locust load tests. Never import this package beside Ray: gevent's monkey-patching breaks it."""
