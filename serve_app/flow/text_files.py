"""A user's texts from a JSONL or CSV file, read a chunk at a time (`emotion-monitor analyze --file`).

The file is never held whole: each chunk of rows becomes `Post`s (the service's record, so
the same hygiene, language selection and text joining apply) and the caller keeps only what
it needs per text. Problems a user can fix (no such file, an unknown extension, a field the
rows lack, a line that is not JSON) raise `TextFileError` naming the file, line and field.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from serve_app.domain.posts import Post

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
# CSV cells can hold whole documents; the csv module's default limit (128 KiB) is too small.
_CSV_FIELD_LIMIT = 16 * 2**20


class TextFileError(ValueError):
    """A texts file that cannot be read as asked; the message says what to change."""


@dataclass(frozen=True)
class TextFields:
    """Which fields hold the text and the id. Several text fields (`title,body`) are joined
    as a post's title and body are (`serve_app.model.preprocess.post_text`)."""

    text: tuple[str, ...] = ("text",)
    id: str | None = None  # None: the row's number (line in JSONL, record in CSV, from 1)

    @classmethod
    def parse(cls, text_field: str, id_field: str | None = None) -> TextFields:
        names = tuple(f.strip() for f in text_field.split(",") if f.strip())
        if not names:
            raise TextFileError("--text-field is empty: name the field that holds the text, e.g. text")
        return cls(names, id_field or None)


def file_kind(path: Path) -> str:
    """`jsonl` or `csv` from the file's extension; a missing file or another extension is an error."""
    suffix = path.suffix.lower()
    if suffix not in JSONL_SUFFIXES + CSV_SUFFIXES:
        raise TextFileError(
            f"{path}: unknown extension {suffix or '(none)'!r}; give a .jsonl (one JSON object per line) "
            "or a .csv file with a header row"
        )
    if not path.is_file():
        raise TextFileError(f"{path}: no such file")
    return "jsonl" if suffix in JSONL_SUFFIXES else "csv"


def _value(row: Mapping[str, object], name: str, where: str, what: str) -> str:
    if name not in row:
        fields = ", ".join(sorted(map(str, row))) or "none"
        raise TextFileError(
            f"{where} has no field {name!r} (its fields: {fields}); pass the {what} field's name "
            f"with --{what}-field"
        )
    value = row[name]
    return "" if value is None else str(value)


def to_post(row: Mapping[str, object], number: int, fields: TextFields, where: str) -> Post:
    """One row as a `Post`: the first text field as its title, the others as its body."""
    # The first text field must be there; later ones (a body) may be missing from a row.
    parts = [_value(row, fields.text[0], where, "text")]
    parts += [_value(row, name, where, "text") if name in row else "" for name in fields.text[1:]]
    pid = _value(row, fields.id, where, "id") if fields.id else str(number)
    return Post(
        id=pid, title=parts[0], body="\n\n".join(p for p in parts[1:] if p), subreddit="", created_utc=0.0,
        score=0, url="",
    )  # fmt: skip


def _jsonl_rows(fh: io.TextIOBase, path: Path) -> Iterator[tuple[int, str, Mapping[str, object]]]:
    for number, line in enumerate(fh, 1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TextFileError(
                f"{where} is not JSON ({exc.msg}); a .jsonl file has one object per line"
            ) from None
        if not isinstance(row, dict):
            raise TextFileError(f"{where} is a JSON {type(row).__name__}, not an object with fields")
        yield number, where, row


def _csv_rows(fh: io.TextIOBase, path: Path) -> Iterator[tuple[int, str, Mapping[str, object]]]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.DictReader(fh)
    if reader.fieldnames is None:
        return  # an empty file: no rows
    try:
        for number, row in enumerate(reader, 1):
            # A short row's missing cells are None; a long row's extras sit under the None key.
            yield number, f"{path.name} record {number}", {k: v for k, v in row.items() if k is not None}
    except csv.Error as exc:
        raise TextFileError(f"{path.name} near line {reader.line_num} is not valid CSV: {exc}") from None


def read_posts(
    path: Path,
    fields: TextFields,
    chunk_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> Iterator[list[Post]]:
    """The file's rows as `Post`s, `chunk_size` at a time; `progress` gets the bytes read so far."""
    kind = file_kind(path)
    with path.open("rb") as raw:
        # utf-8-sig: spreadsheet programs start CSV files with a byte order mark.
        newline = "" if kind == "csv" else None
        fh = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline=newline)
        rows = _jsonl_rows(fh, path) if kind == "jsonl" else _csv_rows(fh, path)
        chunk: list[Post] = []
        for number, where, row in rows:
            chunk.append(to_post(row, number, fields, where))
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
                if progress is not None:
                    progress(raw.tell())
        if chunk:
            yield chunk
        if progress is not None:
            progress(raw.tell())
