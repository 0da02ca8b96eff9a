"""`emotion-monitor demo`: a live demo with no internet (tooling/demo.py does the work)."""

from __future__ import annotations

from typing import Annotated

import typer

from tooling.cli.main import DEFAULT_URL, ServiceUrl, app
from tooling.demo import STATED_TIME_S, DemoConfig, DemoError, DemoRun, clock


@app.command()
def demo(
    url: ServiceUrl = DEFAULT_URL,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for a trend and an alert before giving up.")
    ] = STATED_TIME_S,
) -> None:
    """Replay the local corpus into the running service (`make run`) as a live feed, with a
    planted burst of angry posts, and show the watched keyword's trend until the service's
    monitor raises a spike alert (usually within 2 minutes; no internet needed).

    Exit status: 0 with a trend and an alert; 1 if none came in time; 2 if the service is not
    running or refused a call.
    """
    from serve_app.config.settings import get_settings, secret

    cfg = DemoConfig(url=url, api_key=secret(get_settings().http.api_key), timeout_s=timeout)
    try:
        out = DemoRun(cfg, typer.echo).run()
    except DemoError as exc:
        typer.echo(f"demo: {exc}", err=True)
        raise typer.Exit(2) from None
    buckets = len(out.trend.buckets) if out.trend else 0
    page = f"{url.rstrip('/')}/"
    if out.done:
        typer.echo(f"done in {clock(out.elapsed_s)}: a trend of {buckets} buckets and {len(out.alerts)} "
                   f"alert(s). See them at {page}; the watch of {out.replay.keyword!r} stays "
                   f"(`emotion-monitor watch rm {out.replay.keyword}` removes it).")  # fmt: skip
        return
    hint = (
        "The service's monitor may be waiting for an idle CPU (EMOTION_MONITOR_MONITOR__CPU_THRESHOLD) "
        "or be off (EMOTION_MONITOR_MONITOR__ENABLED); `emotion-monitor watch list` shows its last poll."
    )
    typer.echo(f"demo: no alert within {clock(timeout)} ({buckets} trend buckets so far). {hint}", err=True)
    raise typer.Exit(1)
