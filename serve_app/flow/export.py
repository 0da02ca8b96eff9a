"""The scored texts of one analysis as a spreadsheet (CSV) or JSON lines: pure encoding.

`GET /analyses/{analysis_id}/posts` reads the texts from the held record in Redis while it
is there, and from PostgreSQL (table `analysis_texts`, migration 0010) after the sync; both
paths feed the same `ExportText` rows, in the record's post order, through the encoders
below, so the bytes are identical either way.

CSV: UTF-8 with a byte-order mark (spreadsheets otherwise guess a legacy code page),
`csv.QUOTE_MINIMAL`, CRLF line ends (RFC 4180), and a formula-injection guard: a cell that
starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading apostrophe, so a
spreadsheet shows it as text instead of running it (OWASP "CSV injection"). Numbers we
write ourselves (confidences, scores) are never guarded; a negative number never occurs.
JSONL keeps the raw values (no guard: it is not opened by spreadsheets).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypedDict

from serve_app.domain.records import HistoryRecord, PredictionRow
from serve_app.domain.tasks import TASKS

ExportFormat = Literal["csv", "jsonl"]
MEDIA_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BASE_COLUMNS = ("id", "kind", "parent_id", "link", "subreddit", "created_utc", "title", "text", "language")
ROWS_PER_CHUNK = 100  # rows encoded per yielded chunk: bounded memory, few tiny writes


class ExportText(TypedDict):
    """One scored text of an analysis, as exported."""

    id: str
    kind: str  # post | comment
    parent_id: str | None  # a comment's post
    link: str
    subreddit: str
    created_utc: float | None
    title: str
    text: str
    language: str
    predictions: dict[str, PredictionRow]


class AnalysisNotFound(LookupError):
    """No analysis with this id is recorded (the route answers 404)."""

    def __init__(self, analysis_id: str, detail: str) -> None:
        super().__init__(detail)
        self.analysis_id = analysis_id
        self.detail = detail


class AnalysisExpired(AnalysisNotFound):
    """The analysis is known but its texts are no longer kept (the route answers 410)."""


def task_labels(task: str, seen: Iterable[str] = ()) -> tuple[str, ...]:
    """A task's score columns: the registry's labels, then any other label seen, sorted (a
    task the registry no longer declares keeps its own labels)."""
    known = TASKS[task].labels if task in TASKS else ()
    return known + tuple(sorted(set(seen) - set(known)))


def columns(tasks: Sequence[str], labels: Mapping[str, Sequence[str]]) -> list[str]:
    """The CSV header: the text's fields, then per task its label, confidence and scores."""
    out = list(BASE_COLUMNS)
    for t in tasks:
        out += [f"{t}_label", f"{t}_confidence"] + [f"{t}_score_{lab}" for lab in labels[t]]
    return out


def iso_utc(ts: float | None) -> str:
    """Unix seconds as ISO 8601 UTC with a Z ('' when unknown); whole seconds stay short."""
    if ts is None:
        return ""
    when = dt.datetime.fromtimestamp(float(ts), tz=dt.UTC)
    return when.isoformat(timespec="seconds" if when.microsecond == 0 else "microseconds").replace(
        "+00:00", "Z"
    )


def guard(cell: str) -> str:
    """Neutralise a text cell a spreadsheet would read as a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def texts_from_record(rec: HistoryRecord) -> Iterator[ExportText]:
    """The scored texts of a held record, in its post order (posts left out for their
    language carry no prediction and are not exported)."""
    for p in rec["posts"]:
        if not p["predictions"]:
            continue
        extra: Mapping[str, Any] = p  # `kind`/`parent_id` exist once comments are recorded
        yield {
            "id": p["id"],
            "kind": str(extra.get("kind") or "post"),
            "parent_id": extra.get("parent_id"),
            "link": p["url"],
            "subreddit": p["subreddit"],
            "created_utc": p["created_utc"],
            "title": p["title"],
            "text": p["body"],
            "language": p.get("lang") or "und",
            "predictions": p["predictions"],
        }


def _csv_cells(t: ExportText, tasks: Sequence[str], labels: Mapping[str, Sequence[str]]) -> list[str]:
    cells = [
        guard(t["id"]),
        t["kind"],
        guard(t["parent_id"] or ""),
        guard(t["link"]),
        guard(t["subreddit"]),
        iso_utc(t["created_utc"]),
        guard(t["title"]),
        guard(t["text"]),
        t["language"],
    ]
    for task in tasks:
        row = t["predictions"].get(task)
        if row is None:
            cells += [""] * (2 + len(labels[task]))
            continue
        cells += [guard(row["label"]), repr(float(row["confidence"]))]
        cells += ["" if (s := row["scores"].get(lab)) is None else repr(float(s)) for lab in labels[task]]
    return cells


def _json_line(t: ExportText, tasks: Sequence[str], labels: Mapping[str, Sequence[str]]) -> str:
    obj: dict[str, Any] = {
        "id": t["id"],
        "kind": t["kind"],
        "parent_id": t["parent_id"],
        "link": t["link"],
        "subreddit": t["subreddit"],
        "created_utc": iso_utc(t["created_utc"]),
        "title": t["title"],
        "text": t["text"],
        "language": t["language"],
    }
    for task in tasks:
        row = t["predictions"].get(task)
        obj[task] = (
            None
            if row is None
            else {
                "label": row["label"],
                "confidence": float(row["confidence"]),
                "scores": {lab: float(row["scores"][lab]) for lab in labels[task] if lab in row["scores"]},
            }
        )
    return json.dumps(obj, ensure_ascii=False) + "\n"


class Encoder:
    """Turns rows into the chosen format's bytes, a chunk of rows at a time."""

    def __init__(self, fmt: ExportFormat, tasks: Sequence[str], labels: Mapping[str, Sequence[str]]) -> None:
        self.fmt, self.tasks, self.labels = fmt, list(tasks), labels
        self.buf = io.StringIO(newline="")
        self.writer = csv.writer(self.buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")

    def header(self) -> bytes:
        if self.fmt == "jsonl":
            return b""
        self.writer.writerow(columns(self.tasks, self.labels))
        return (BOM + self._take()).encode()

    def rows(self, texts: Iterable[ExportText]) -> bytes:
        if self.fmt == "jsonl":
            return "".join(_json_line(t, self.tasks, self.labels) for t in texts).encode()
        self.writer.writerows(_csv_cells(t, self.tasks, self.labels) for t in texts)
        return self._take().encode()

    def _take(self) -> str:
        out = self.buf.getvalue()
        self.buf.seek(0)
        self.buf.truncate()
        return out


def chunks(fmt: ExportFormat, tasks: Sequence[str], texts: Iterable[ExportText]) -> Iterator[bytes]:
    """The whole export as byte chunks: the header, then `ROWS_PER_CHUNK` rows at a time.

    Each task's score columns are the registry's labels plus any other label the first
    text carries (one analysis is scored by one model version per task)."""
    it = iter(texts)
    first = next(it, None)
    seen = {} if first is None else {t: row["scores"] for t, row in first["predictions"].items()}
    labels = {t: task_labels(t, seen.get(t, ())) for t in tasks}
    enc = Encoder(fmt, tasks, labels)
    head = enc.header()
    if head:
        yield head
    if first is None:
        return
    batch: list[ExportText] = [first]
    for t in it:
        if len(batch) >= ROWS_PER_CHUNK:
            yield enc.rows(batch)
            batch = []
        batch.append(t)
    yield enc.rows(batch)


async def achunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    """Chunks for a StreamingResponse from the event loop (the record is already in memory)."""
    for part in parts:
        yield part


def record_chunks(rec: HistoryRecord, fmt: ExportFormat) -> Iterator[bytes]:
    """A held record's export."""
    return chunks(fmt, list(rec["tasks"]), texts_from_record(rec))


def filename(analysis_id: str, keyword: str, fmt: ExportFormat) -> str:
    """An ASCII file name for Content-Disposition: the keyword's letters and digits, the id."""
    words = "".join(ch if ch.isascii() and ch.isalnum() else " " for ch in keyword).split()
    slug = "-".join(words)[:40]
    return f"{slug or 'analysis'}-{analysis_id[:12]}.{fmt}"


# PostgreSQL keeps each analysis's scored texts as scored (migration 0010): the shared
# `posts` table holds one version of each post (the first seen), so an edited title would
# otherwise come back different after the sync, and `predictions.confidence` is a `real`.
INSERT_TEXTS = (
    "INSERT INTO analysis_texts (query_id, position, post_id, kind, parent_id, link, subreddit,"
    " created_utc, title, body, lang, predictions)"
    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb) ON CONFLICT DO NOTHING"
)


def text_rows(rec: HistoryRecord) -> Iterator[tuple[object, ...]]:
    """`analysis_texts` rows of a record: its scored texts, with their place in the record."""
    texts = texts_from_record(rec)
    positions = (i for i, p in enumerate(rec["posts"]) if p["predictions"])
    for pos, t in zip(positions, texts, strict=True):
        yield (
            rec["query_id"],
            pos,
            t["id"],
            t["kind"],
            t["parent_id"],
            t["link"],
            t["subreddit"],
            t["created_utc"],
            t["title"],
            t["text"],
            t["language"],
            json.dumps(t["predictions"]),
        )
