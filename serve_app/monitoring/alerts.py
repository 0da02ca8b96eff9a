"""Delivering spike alerts to a webhook: a JSON POST, retried with backoff within a pass.

A webhook that is down loses nothing: the alert stays `pending` in PostgreSQL and the
monitor offers it again on its next passes, until it is delivered or has used its
attempts (`failed`, visible in `GET /alerts` with the last error).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import httpx

from serve_app.stores.watchlists import AlertRow


def alert_payload(alert: AlertRow) -> dict[str, Any]:
    body = asdict(alert)
    if alert.keyword.startswith("drift:"):  # a drift alert (serve_app.stores.drift_store.drift_alert)
        body["kind"] = "emotion-monitor.drift"
        body["text"] = (
            f"model drift on {alert.keyword.removeprefix('drift:')} ({alert.task}): {alert.label} "
            f"over the last {alert.posts} posts (largest effect {alert.share:.1f} %, -log10 p {alert.z:.1f})"
        )
        return body
    body["kind"] = "emotion-monitor.spike"
    body["text"] = (
        f"{alert.keyword}: {alert.label} ({alert.task}) at {alert.share:.1f} % of {alert.posts} posts, "
        f"against {alert.baseline:.1f} % of {alert.baseline_posts} before (z {alert.z:.1f})"
    )
    if alert.emerging_terms:
        body["text"] += "; rising: " + ", ".join(t["term"] for t in alert.emerging_terms[:5])
    return body


async def deliver(
    client: httpx.AsyncClient, url: str, alert: AlertRow, tries: int = 3, backoff_s: float = 0.5
) -> tuple[bool, str | None]:
    """POST the alert; (delivered, last error). 2xx is delivered; 4xx other than 408/429 is
    not retried in this pass (the receiver refuses it); anything else is, with backoff."""
    error: str | None = None
    for attempt in range(tries):
        try:
            resp = await client.post(url, json=alert_payload(alert))
            if 200 <= resp.status_code < 300:
                return True, None
            error = f"HTTP {resp.status_code}"
            if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                return False, error
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        if attempt + 1 < tries:
            await asyncio.sleep(backoff_s * 2**attempt)
    return False, error
