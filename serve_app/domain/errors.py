"""Errors raised below the ingress; the ingress alone maps them to HTTP statuses."""

from __future__ import annotations


class EmotionMonitorError(Exception):
    """Base class for errors with a message meant for the API caller."""


class SourceError(EmotionMonitorError):
    """A post source could not answer.

    `kind` is `unreachable` (connection refused, DNS, 5xx after retries), `timeout`, or
    `rate_limited`; the ingress answers 502, 504 and 503 respectively, naming the source.
    """

    def __init__(self, source: str, kind: str, detail: str, retry_after: float | None = None) -> None:
        self.message = f"source {source!r} {kind.replace('_', ' ')}: {detail}"
        super().__init__(self.message)
        self.source = source
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:  # survive pickling across Ray actors
        return (type(self), (self.source, self.kind, self.detail, self.retry_after))


class SourceConfigError(EmotionMonitorError):
    """The requested source is not configured (e.g. the JSONL corpus file is missing)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # str() of Ray's wrapper around a replica's exception is a traceback: keep ours.
        self.message = message


class ServiceUnavailable(EmotionMonitorError):
    """A part of the service (named in `detail`) cannot answer now; retry after `retry_after` s."""

    def __init__(self, detail: str, retry_after: float = 5.0) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class TaskNotServed(EmotionMonitorError):
    """A task was asked for that this deployment does not serve."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
