"""Shadow pairs and promotion records in PostgreSQL (migration 0011).

Plain functions over a DSN, called by the Classifier's shadow thread, the ingress (in a
thread) and the CLI. Errors reaching PostgreSQL raise `HistoryUnavailable` (503 in the API).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from serve_app.lifecycle.shadow import ShadowPair
from serve_app.stores.watchlists import _connect, ensure_schema

_PAIR_COLS = (
    "source, post_id, task, live_version, candidate_version, live_label, candidate_label,"
    " live_probs, candidate_probs, live_ms, candidate_ms"
)


class ShadowSink:
    """The Classifier's store: migrates once, then inserts each batch of pairs."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self._ready = dsn, False

    def __call__(self, pairs: Sequence[ShadowPair]) -> None:
        if not self._ready:
            ensure_schema(self.dsn)
            self._ready = True
        insert_pairs(self.dsn, pairs)


def insert_pairs(dsn: str, pairs: Sequence[ShadowPair]) -> int:
    """Store pairs; a post already paired by the same two versions keeps its first pair."""
    if not pairs:
        return 0
    rows = [
        (
            p.source,
            p.post_id,
            p.task,
            p.live_version,
            p.candidate_version,
            p.live_label,
            p.candidate_label,
            list(p.live_probs),
            list(p.candidate_probs),
            p.live_ms,
            p.candidate_ms,
        )
        for p in pairs
    ]
    with _connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO shadow_pairs ({_PAIR_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " ON CONFLICT DO NOTHING",
            rows,
        )
        return len(rows)


def load_pairs(
    dsn: str,
    task: str | None = None,
    live_version: str | None = None,
    candidate_version: str | None = None,
    since: dt.datetime | None = None,
) -> list[ShadowPair]:
    """Stored pairs, oldest first, filtered by task, versions and time."""
    where, args = [], []
    for col, value in (
        ("task", task),
        ("live_version", live_version),
        ("candidate_version", candidate_version),
    ):
        if value:
            where.append(f"{col} = %s")
            args.append(value)
    if since is not None:
        where.append("at >= %s")
        args.append(since)  # type: ignore[arg-type]
    sql = f"SELECT {_PAIR_COLS} FROM shadow_pairs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    with _connect(dsn) as conn:
        rows = conn.execute(sql + " ORDER BY id", args).fetchall()
    return [
        ShadowPair(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(r[7]), tuple(r[8]), float(r[9]), float(r[10])
        )
        for r in rows
    ]


class Promotion(BaseModel):
    """One promotion or rollback as recorded."""

    id: int
    at: dt.datetime
    actor: str
    action: str
    from_versions: dict[str, str]
    to_versions: dict[str, str]
    gate: dict[str, object]
    deployed: bool


@dataclass(frozen=True)
class PromotionRecord:
    actor: str
    action: str
    from_versions: dict[str, str]
    to_versions: dict[str, str]
    gate: dict[str, object]
    deployed: bool


def record_promotion(dsn: str, rec: PromotionRecord) -> int:
    ensure_schema(dsn)
    with _connect(dsn) as conn:
        row = conn.execute(
            "INSERT INTO model_promotions (actor, action, from_versions, to_versions, gate, deployed)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (
                rec.actor,
                rec.action,
                Jsonb(rec.from_versions),
                Jsonb(rec.to_versions),
                Jsonb(rec.gate),
                rec.deployed,
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


def promotions(dsn: str, limit: int = 20) -> list[Promotion]:
    """The latest promotions and rollbacks, newest first."""
    ensure_schema(dsn)
    with _connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, at, actor, action, from_versions, to_versions, gate, deployed"
            " FROM model_promotions ORDER BY id DESC LIMIT %s",
            (limit,),
        ).fetchall()
    return [
        Promotion(
            id=r[0],
            at=r[1],
            actor=r[2],
            action=r[3],
            from_versions=r[4],
            to_versions=r[5],
            gate=r[6],
            deployed=r[7],
        )
        for r in rows
    ]
