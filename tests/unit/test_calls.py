"""Calls to other deployments (serve_app.flow.calls), without Ray: retries, timeouts, admission."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError

from serve_app.domain.errors import ServiceUnavailable, SourceError
from serve_app.flow.calls import Admission, call_with_retries

pytestmark = pytest.mark.unit


class Flaky:
    """Fails with `errors` one after another, then answers."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


def test_a_call_whose_replica_died_is_sent_again() -> None:
    send = Flaky(RayActorError(), RayActorError())
    assert asyncio.run(call_with_retries("classifier", send, timeout=10, retries=5)) == "answer"
    assert send.calls == 3


def test_retries_are_bounded_and_the_message_names_the_part() -> None:
    send = Flaky(*[RayActorError() for _ in range(5)])
    with pytest.raises(ServiceUnavailable, match="classifier unavailable"):
        asyncio.run(call_with_retries("classifier", send, timeout=10, retries=2))
    assert send.calls == 3


def test_a_bug_is_not_retried() -> None:
    send = Flaky(ValueError("bad shape"))
    with pytest.raises(ServiceUnavailable, match=r"aggregator unavailable \(ValueError\)"):
        asyncio.run(call_with_retries("aggregator", send, timeout=10, retries=5))
    assert send.calls == 1


def test_a_source_error_passes_through_unchanged() -> None:
    err = SourceError("reddit", "timeout", "no answer in 10 s")
    with pytest.raises(SourceError) as got:
        asyncio.run(call_with_retries("source", Flaky(err), timeout=10, retries=5))
    assert got.value is err


def test_timeout_and_backpressure_become_503s() -> None:
    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    with pytest.raises(ServiceUnavailable, match="did not answer within"):
        asyncio.run(call_with_retries("classifier", slow, timeout=0.2, retries=5))
    full = Flaky(BackPressureError(num_queued_requests=9, max_queued_requests=8))
    with pytest.raises(ServiceUnavailable, match="at capacity") as got:
        asyncio.run(call_with_retries("classifier", full, timeout=10, retries=5))
    assert got.value.retry_after == 1 and full.calls == 1


def test_admission_sheds_beyond_its_limit_and_frees_on_exit() -> None:
    gate = Admission(limit=2)
    with gate.admit(), gate.admit():
        with pytest.raises(ServiceUnavailable, match="limit 2"), gate.admit():
            pass
        assert gate.inflight == 2 and gate.shed_total == 1
    assert gate.inflight == 0
    with pytest.raises(RuntimeError), gate.admit():
        raise RuntimeError("the work failed")
    assert gate.inflight == 0  # freed on failure too
