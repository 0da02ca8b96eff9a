"""Ray shells over the core (`serve_app`), the detached actors, and the composition root
(`app.py`: the app builder; `ingress.py`: the HTTP routes)."""
