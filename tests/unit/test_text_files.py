"""Reading a user's texts (serve_app.flow.text_files) and the file analysis's hygiene."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_app.flow.file_analysis import Hygiene
from serve_app.flow.text_files import TextFields, TextFileError, read_posts

pytestmark = pytest.mark.unit

TEXTS = [
    'She said "never again", and meant it.',
    "Ünïcödé: café, naïve, 日本語, emoji 😡🔥",
    "line one\nline two, with a comma",
]


def _all(path: Path, fields: TextFields, chunk: int = 2) -> list[tuple[str, str, str]]:
    return [(p.id, p.title, p.body) for c in read_posts(path, fields, chunk) for p in c]


def test_jsonl_with_quotes_unicode_and_empty_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [json.dumps({"id": f"r{i}", "text": t}, ensure_ascii=i != 1) for i, t in enumerate(TEXTS)]
    path.write_text("\n" + lines[0] + "\n\n   \n" + "\n".join(lines[1:]) + "\n\n", encoding="utf-8")
    got = _all(path, TextFields.parse("text", "id"))
    assert got == [(f"r{i}", t, "") for i, t in enumerate(TEXTS)]
    # Without an id field, a row's id is its line number (empty lines count as lines).
    assert [g[0] for g in _all(path, TextFields.parse("text"))] == ["2", "5", "6"]


def test_csv_with_quoted_commas_newlines_bom_and_empty_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    body = "id,text,stars\r\n"
    for i, t in enumerate(TEXTS):
        body += f'r{i},"{t.replace(chr(34), chr(34) * 2)}",5\r\n' + ("\r\n" if i == 0 else "")
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    got = _all(path, TextFields.parse("text", "id"))
    assert got == [(f"r{i}", t, "") for i, t in enumerate(TEXTS)]


def test_several_text_fields_become_title_and_body(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        json.dumps({"title": "Broken again", "body": "Third time this month."}) + "\n"
        + json.dumps({"title": "Only a title"}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    got = _all(path, TextFields.parse("title, body"))
    assert got == [("1", "Broken again", "Third time this month."), ("2", "Only a title", "")]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_missing_text_field_is_an_error_naming_it(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        path.write_text("id,body\n1,hello\n", encoding="utf-8")
    else:
        path.write_text('{"id": 1, "body": "hello"}\n', encoding="utf-8")
    with pytest.raises(TextFileError, match=r"no field 'review'.*body.*--text-field"):
        _all(path, TextFields.parse("review"))
    with pytest.raises(TextFileError, match=r"no field 'key'.*--id-field"):
        _all(path, TextFields.parse("body", "key"))


def test_bad_files_are_errors_that_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TextFileError, match="no such file"):
        _all(tmp_path / "absent.jsonl", TextFields())
    (tmp_path / "t.txt").write_text("hello\n")
    with pytest.raises(TextFileError, match=r"unknown extension '\.txt'.*\.jsonl.*\.csv"):
        _all(tmp_path / "t.txt", TextFields())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": broken\n')
    with pytest.raises(TextFileError, match=r"bad\.jsonl line 2 is not JSON"):
        _all(bad, TextFields())
    arr = tmp_path / "arr.jsonl"
    arr.write_text('["a", "b"]\n')
    with pytest.raises(TextFileError, match="line 1 is a JSON list"):
        _all(arr, TextFields())
    with pytest.raises(TextFileError, match="--text-field is empty"):
        TextFields.parse(" , ")


def test_chunks_and_progress_cover_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(25)))
    seen: list[int] = []
    sizes = [len(c) for c in read_posts(path, TextFields(), 10, seen.append)]
    assert sizes == [10, 10, 5]
    assert seen[-1] == path.stat().st_size and seen == sorted(seen)


def test_hygiene_counts_empty_rows_and_dedupes_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    rows = ["Great!", "", "Great!", "   ", "[removed]", "Awful."]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    posts = [p for c in read_posts(path, TextFields(), 100) for p in c]
    keep = Hygiene(dedupe=False)
    assert [p.title for p in posts if keep.admit(p)] == ["Great!", "Great!", "[removed]", "Awful."]
    assert keep.counts() == {"empty": 2}
    once = Hygiene(dedupe=True)
    assert [p.title for p in posts if once.admit(p)] == ["Great!", "[removed]", "Awful."]
    assert once.counts() == {"empty": 2, "duplicate": 1}
