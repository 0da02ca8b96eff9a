"""`emotion-monitor analyze --file --ray ADDRESS`: Ray Data actors on the local multi-node
cluster (a head and two workers, tooling.local_cluster) score a file; the answer is the one
this process gives for the same file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serve_app.flow.file_analysis import FileOptions, analyze_file
from serve_app.flow.text_files import TextFields
from tests.conftest import DATA_ROOT, MODEL_DIR
from tooling.bench.file import write_texts
from tooling.cli import app
from tooling.local_cluster import LocalCluster

pytestmark = pytest.mark.cluster

N = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"no committed model at {MODEL_DIR}")
    c = LocalCluster(tmp_path_factory.mktemp("file-ray") / "nodes")
    try:
        c.up(workers=2, head_cpus=1)
        yield c
    finally:
        import ray

        ray.shutdown()  # this process was a driver of the cluster
        c.down()


def test_a_file_is_scored_by_ray_data_actors_on_the_workers(cluster: LocalCluster, tmp_path: Path) -> None:
    path = write_texts(DATA_ROOT / "reddit_sample" / "posts.jsonl", N, tmp_path / "texts.jsonl")
    address = cluster._need_state().address
    args = ["analyze", "--file", str(path), "--id-field", "id", "--json", "--ray", address]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    remote = json.loads(r.stdout)
    local = analyze_file(path, TextFields(("text",), "id"), MODEL_DIR, FileOptions(), 128).model_dump()
    assert remote["count"] == local["count"] == N and remote["scored"] == local["scored"]
    # The actors batch the texts differently (Ray Data batches of 256, one ORT thread): INT8
    # activations are quantised per model batch, so a borderline text may change label (4 of
    # 300 did in a run here). A text placed at the wrong index would move far more.
    for field in ("agg", "sentiment_agg"):
        got = {x["label"]: x["count"] for x in remote[field]}
        want = {x["label"]: x["count"] for x in local[field]}
        assert got.keys() == want.keys()
        assert sum(abs(got[k] - want[k]) for k in got) <= 2 * 0.03 * N, (field, got, want)
    ids, want_ids = set(remote["strongly_negative"]["ids"]), set(local["strongly_negative"]["ids"])
    assert len(ids & want_ids) >= 0.9 * max(len(ids), len(want_ids)) > 0
    assert remote["drivers"]["emotion"].keys() == local["drivers"]["emotion"].keys()
    assert remote["post_source"] == "file" and remote["model_versions"] == local["model_versions"]
