"""HTTP routes for the replayed feed (source "replay", `emotion-monitor demo`).

The replay's clock lives in the Fetcher (serve_app.sources.replay, deployments/fetcher.py); these
routes restart it and read it. Registered on the ingress's app by importing this module.
"""
# No `from __future__ import annotations`: FastAPI must see real types.

from ray import serve

from serve_app.api.http_api import AUTH, ERRORS, api
from serve_app.flow.calls import call_with_retries
from serve_app.sources.replay import ReplayStatus

_TIMEOUT_S = 30.0  # the first use loads the corpus (~2 s) if the Fetcher has not yet


def _fetcher() -> serve.handle.DeploymentHandle:
    # The Fetcher of the application this ingress replica belongs to.
    return serve.get_deployment_handle("Fetcher", app_name=serve.get_replica_context().app_name)


@api.post("/demo/replay", response_model=ReplayStatus, responses=ERRORS, dependencies=AUTH)
async def replay_restart() -> ReplayStatus:
    """Start the replayed feed (source `replay`) again: the local corpus's posts arrive from now
    on as if live, stamped with their arrival time, with a planted burst of angry posts about
    a made-up product a minute in. Posts of earlier runs stay in history under their own ids."""
    status: ReplayStatus = await call_with_retries(
        "fetcher", lambda: _fetcher().restart_replay.remote(), _TIMEOUT_S, 2
    )
    return status


@api.get("/demo/replay", response_model=ReplayStatus, responses=ERRORS, dependencies=AUTH)
async def replay_status() -> ReplayStatus:
    """Where the replayed feed stands (its clock starts at its first use if no run is going)."""
    status: ReplayStatus = await call_with_retries(
        "fetcher", lambda: _fetcher().replay_status.remote(), _TIMEOUT_S, 2
    )
    return status
