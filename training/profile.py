"""The reference profile of an artifact (serve_app.model.drift_profile), and the graph's `embedding`
output it needs.

`add_embedding_output` exposes the pooled sentence vector that already feeds the heads as a
graph output (an Identity node on that tensor: no second model, no extra compute). It works
on FP32 and on dynamically quantized INT8 graphs (where the heads read the vector through
a DynamicQuantizeLinear). `write_profile` scores each head's validation set and a sample of
the service's own kind of text, and writes the profile files into the artifact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serve_app.model.drift_profile import EMBEDDING_OUTPUT, HeadReference, ReferenceProfile, save_profile
from serve_app.model.predictor import OnnxPredictor, read_artifact_info

HEAD_OPS = {"MatMul", "Gemm", "MatMulInteger"}
MAX_CONFIDENCES = 2000  # per head: plenty for a KS test, small in JSON


class ProfileError(RuntimeError):
    """The graph has no single pooled vector feeding every head, or data is missing."""


def pooled_tensor(graph: object, outputs: Sequence[str]) -> str:
    """The tensor every head's first matrix product reads (through a dynamic quantization in
    an INT8 graph): the pooled sentence vector."""
    nodes = graph.node  # type: ignore[attr-defined]
    producer = {o: n for n in nodes for o in n.output}
    found = set()
    for out in outputs:
        name, node = out, producer.get(out)
        while node is not None and node.op_type not in HEAD_OPS:
            name = node.input[0]
            node = producer.get(name)
        if node is None:
            raise ProfileError(f"no matrix product found above the output {out!r}")
        name = node.input[0]
        before = producer.get(name)
        if before is not None and before.op_type == "DynamicQuantizeLinear":
            name = before.input[0]
        found.add(name)
    if len(found) != 1:
        raise ProfileError(f"the heads read different tensors ({sorted(found)}): no single pooled vector")
    return found.pop()


def add_embedding_output(model_path: Path) -> bool:
    """Expose the pooled vector as output `embedding` (in place). False if it already was."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(model_path))
    graph = model.graph
    if any(o.name == EMBEDDING_OUTPUT for o in graph.output):
        return False
    logits = [o.name for o in graph.output]
    pooled = pooled_tensor(graph, logits)
    graph.node.append(helper.make_node("Identity", [pooled], [EMBEDDING_OUTPUT], name="embedding_output"))
    graph.output.append(helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", None]))
    onnx.checker.check_model(model)
    onnx.save(model, str(model_path))
    return True


@dataclass(frozen=True)
class ProfileData:
    """Where each head's labelled validation set is, and the unlabelled texts of the service's
    own kind (Reddit submissions) that the drift watch compares live posts against."""

    validation: dict[str, Path]  # task -> JSONL with text and label
    traffic: Path | None = None  # JSONL of posts (title, body), e.g. reddit_sample
    traffic_posts: int = 1000
    seed: int = 0


def default_data(data_root: Path) -> ProfileData:
    return ProfileData(
        validation={
            "emotion": data_root / "reddit_emotion7" / "validation.jsonl",
            "sentiment": data_root / "reddit_sentiment" / "validation.jsonl",
        },
        traffic=data_root / "reddit_sample" / "posts.jsonl",
    )


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def reference_posts(path: Path, n: int, seed: int) -> list[str]:
    """A fixed random sample of the corpus's posts as the classifier sees them."""
    from serve_app.model.preprocess import post_text

    rows = read_jsonl(path)
    idx = np.random.default_rng(seed).choice(len(rows), min(n, len(rows)), replace=False)
    return [post_text(str(rows[i].get("title", "")), str(rows[i].get("body", ""))) for i in sorted(idx)]


def _head_reference(
    probs: np.ndarray, labels: Sequence[str], truth: list[str] | None, data: str
) -> HeadReference:
    pred = probs.argmax(axis=1)
    conf = np.sort(probs.max(axis=1))
    if len(conf) > MAX_CONFIDENCES:
        conf = conf[np.linspace(0, len(conf) - 1, MAX_CONFIDENCES).astype(int)]
    true_mix = accuracy = None
    if truth is not None:
        index = {lab: i for i, lab in enumerate(labels)}
        ids = np.array([index.get(t, -1) for t in truth])
        true_mix = tuple(round(float((ids == i).mean()), 5) for i in range(len(labels)))
        accuracy = round(float((ids == pred).mean()), 5)
    return HeadReference(
        labels=tuple(labels),
        predicted_counts=tuple(int(c) for c in np.bincount(pred, minlength=len(labels))),
        confidences=tuple(round(float(c), 4) for c in conf),
        true_mix=true_mix,
        accuracy=accuracy,
        data=data,
    )


def build_profile(model_dir: Path, data: ProfileData, embeddings: int = 1000) -> ReferenceProfile:
    """Score the reference texts with the artifact (which must have the embedding output).

    Validation sets give each head's true mix and accuracy (and the estimate of accuracy
    from confidence is checked against it); the compared distributions (predicted mix,
    confidence, embeddings) come from the service's own kind of text when `data.traffic`
    is given: validation comments are not what the service scores (docs/drift.md)."""
    info = read_artifact_info(model_dir)
    pred = OnnxPredictor(model_dir, threads=2)
    if pred.embedding_output is None:
        raise ProfileError(f"{model_dir}/model.onnx lacks the {EMBEDDING_OUTPUT!r} output")
    heads: dict[str, HeadReference] = {}
    validation: dict[str, HeadReference] = {}
    for task, path in data.validation.items():
        if task not in info.heads:
            continue
        if not path.is_file():
            raise ProfileError(f"{path} is missing: the {task} head's validation set")
        rows = read_jsonl(path)
        probs, _ = pred.probabilities_and_embeddings([str(r["text"]) for r in rows])
        truth = [str(r["label"]) for r in rows]
        name = f"{path.parent.name} validation"
        validation[task] = _head_reference(probs[task], info.heads[task].labels, truth, name)
    if data.traffic is not None:
        texts = reference_posts(data.traffic, data.traffic_posts, data.seed)
        made_from = f"{len(texts)} posts of {data.traffic.parent.name} (seed {data.seed})"
    else:
        first = next(iter(data.validation.values()))
        texts = [str(r["text"]) for r in read_jsonl(first)]
        made_from = f"{first.parent.name} validation"
    probs, emb = pred.probabilities_and_embeddings(texts)
    for task, val in validation.items():
        live = _head_reference(probs[task], info.heads[task].labels, None, made_from)
        truth_from = f"{made_from}; truth: {val.data}"
        heads[task] = HeadReference(
            live.labels, live.predicted_counts, live.confidences, val.true_mix, val.accuracy, truth_from
        )
    assert emb is not None
    idx = np.random.default_rng(data.seed).choice(len(emb), min(embeddings, len(emb)), replace=False)
    return ReferenceProfile(heads, emb[np.sort(idx)].astype(np.float16), made_from)


def write_profile(model_dir: Path, data: ProfileData, embeddings: int = 1000) -> list[Path]:
    """Add the embedding output if missing, then write the profile files; the paths written."""
    changed = add_embedding_output(model_dir / "model.onnx")
    paths = save_profile(model_dir, build_profile(model_dir, data, embeddings))
    return ([model_dir / "model.onnx"] if changed else []) + paths
