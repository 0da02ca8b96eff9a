"""`python -m tooling.cli`: the `emotion-monitor` command line."""

from tooling.cli import app

app()
