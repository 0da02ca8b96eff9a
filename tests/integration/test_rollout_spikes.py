"""The keyword monitor's spike baseline restarts at a model change (issue 30, canary): only
posts labelled by the version that labelled the keyword's newest analysis count, so a new
version's different label mix raises no alert by itself. Real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from serve_app.monitoring.trends import detect_spikes, spike_rules
from serve_app.stores.history_sql import migrate
from serve_app.stores.watchlists import trend_buckets
from tests.integration.conftest import _fresh_database
from tests.integration.test_watchlists import spike_history

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spikes_pg() -> Iterator[str]:
    for url in _fresh_database("em_vspike"):
        migrate(url)
        yield url


def test_spike_baseline_restarts_at_a_model_change(spikes_pg: str) -> None:
    """24 hours labelled by v1 at 10 % anger, then an hour by v2, whose label mix differs
    (50 % anger): the trend shows the jump, the spike test sees no baseline for v2, so the
    version change raises no alert; with every bucket it would."""
    keyword, now = "versionswitch", time.time()
    spike_history(spikes_pg, keyword, now, version_of_hour=lambda h: "v2" if h == 24 else "v1")
    rules = spike_rules()  # z 3, 20 posts, a baseline of 24 buckets
    every = trend_buckets(spikes_pg, keyword, 3600, now - 2 * 86_400)
    assert len(every) == 25 and [s.task for s in detect_spikes(keyword, every, rules, 3600)] == ["emotion"]
    current = trend_buckets(spikes_pg, keyword, 3600, now - 2 * 86_400, current_version_only=True)
    assert len(current) == 1 and current[0].posts["emotion"] == 30
    assert detect_spikes(keyword, current, rules, 3600) == []
