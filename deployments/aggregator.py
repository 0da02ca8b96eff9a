"""Aggregator: a Serve shell over `serve_app.flow.aggregate.summarize` (breakdowns with
95 % intervals, drivers, representatives, the chart)."""

from __future__ import annotations

import logging

from ray import serve

from serve_app.counting.quantify import Counting
from serve_app.domain.posts import Post
from serve_app.domain.records import PredictionRow, Summary
from serve_app.flow.aggregate import (
    summarize,
)

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.aggregator")


@serve.deployment(
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=64,
    logging_config={"enable_access_log": False},
)
class Aggregator:
    def summarize(
        self,
        keyword: str,
        predictions: dict[str, list[PredictionRow]],
        return_plot: bool,
        counting: dict[str, Counting] | None = None,
        partial: bool = False,
        posts: list[Post] | None = None,
    ) -> Summary:
        """The breakdowns of every task in `predictions`, by response field, and the chart.

        `partial`: the source stopped early; the chart's titles say so. `posts`: the scored
        posts (the predictions' order): with them, each task's drivers and representative posts.
        """
        return summarize(keyword, predictions, return_plot, counting or {}, partial, posts)
