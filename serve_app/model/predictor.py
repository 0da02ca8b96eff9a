"""Torch-free inference: a tokenizer and an ONNX Runtime session over a model artifact.

An artifact directory holds `model.onnx`, `tokenizer.json`, `labels.json` (label order,
maximum length, softmax temperature) and a model card. Training writes it; the Classifier
deployment, the CLI and the evaluation all read it through `OnnxPredictor`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from serve_app.counting.quantify import Counting, counting_from_spec
from serve_app.model.drift_profile import EMBEDDING_OUTPUT
from serve_app.model.preprocess import normalize_text


class ModelArtifactError(RuntimeError):
    """A model directory is missing a file or has one that cannot be read."""


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    scores: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "scores": self.scores}


@dataclass(frozen=True)
class HeadInfo:
    """One task's head in an artifact: its labels (logit order), the ONNX output that holds
    its logits, the softmax temperature, and how its breakdown is counted (serve_app.counting.breakdown)."""

    labels: tuple[str, ...]
    output: str
    temperature: float = 1.0
    breakdown_method: str = "cc"
    adjustment: tuple[tuple[float, ...], ...] | None = None
    counting: Counting = field(default_factory=Counting)  # all the method needs, resampled fits too


@dataclass(frozen=True)
class ArtifactInfo:
    heads: dict[str, HeadInfo]
    max_length: int
    version: str
    languages: tuple[str, ...] = ("en",)

    @property
    def tasks(self) -> list[str]:
        return list(self.heads)


def read_artifact_info(model_dir: Path) -> ArtifactInfo:
    labels_path = model_dir / "labels.json"
    if not labels_path.is_file():
        raise ModelArtifactError(
            f"{labels_path} is missing: {model_dir} is not a model artifact "
            "(train one with `emotion-monitor train` or pull one with the registry)"
        )
    meta = json.loads(labels_path.read_text())
    if not isinstance(meta.get("heads"), dict) or not meta["heads"]:
        raise ModelArtifactError(
            f"{labels_path} has no `heads`: it was written by an older trainer; rebuild the artifact "
            "with `emotion-monitor export` or pull a current version from the registry"
        )
    version = "unknown"
    card = model_dir / "model_card.json"
    if card.is_file():
        version = str(json.loads(card.read_text()).get("version", "unknown"))
    heads = {}
    for task, h in meta["heads"].items():
        adj = h.get("breakdown", {}).get("adjustment")
        heads[str(task)] = HeadInfo(
            labels=tuple(h["labels"]),
            output=str(h.get("output", f"logits_{task}")),
            temperature=float(h.get("temperature", 1.0)),
            breakdown_method=str(h.get("breakdown", {}).get("method", "cc")),
            adjustment=None if adj is None else tuple(tuple(float(x) for x in row) for row in adj),
            counting=counting_from_spec(h.get("breakdown", {})),
        )
    return ArtifactInfo(
        heads=heads,
        max_length=int(meta.get("max_length", 128)),
        version=version,
        languages=tuple(str(x) for x in meta.get("languages", ["en"])),
    )


# The files that decide an artifact's answers; the model card only describes them.
ANSWER_FILES = ("model.onnx", "tokenizer.json", "labels.json")


def artifact_digest(model_dir: Path) -> str:
    """sha256 over the files that decide the answers: two directories with the same digest
    (one artifact pushed under two registry names, or copied) can share one session."""
    h = hashlib.sha256()
    for name in ANSWER_FILES:
        path = model_dir / name
        h.update(name.encode())
        h.update(path.read_bytes() if path.is_file() else b"")
    return h.hexdigest()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    """Load a fast tokenizer with our padding and truncation, not the file's.

    The base model's tokenizer.json pads and truncates to 128 by itself; we pad per batch
    to the longest text (much faster on short texts) and truncate at `max_length`.
    """
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def make_session(model_path: Path, threads: int, spinning: bool = False) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn the CPU that Ray's other actors and the proxy need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])


def length_chunks(lengths: Sequence[int], max_batch: int, slack: float = 0.25) -> list[list[int]]:
    """Indices sorted by length, cut into model batches of at most `max_batch` whose padded
    size (count x longest) stays within `1 + slack` of their real tokens.

    Padding is wasted work: a batch of mixed-length texts costs as much as that many of its
    longest. Measured on CPU (INT8 MiniLM), small length-matched batches are ~1.6x cheaper
    per text than one text at a time, mixed ones no cheaper at all.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks: list[list[int]] = []
    cur: list[int] = []
    tokens = 0
    for i in order:
        n = max(1, lengths[i])
        if cur and (len(cur) >= max_batch or (len(cur) + 1) * n > (1 + slack) * (tokens + n)):
            chunks.append(cur)
            cur, tokens = [], 0
        cur.append(i)
        tokens += n
    if cur:
        chunks.append(cur)
    return chunks


class OnnxPredictor:
    """Classifies texts with an ONNX artifact; thread-compatible, no torch.

    An artifact has a head per task; one run of the graph yields every head's logits
    (`logits_all`). `task` picks the head that `labels`, `logits`, `probabilities` and
    `predict` answer for (default: the artifact's first).
    """

    def __init__(
        self,
        model_dir: str | Path,
        threads: int = 2,
        max_length: int | None = None,
        batch_size: int = 32,
        model_file: str = "model.onnx",
        version: str | None = None,
        task: str | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        model_path = self.model_dir / model_file
        if not model_path.is_file():
            raise ModelArtifactError(f"{model_path} is missing; point --model at an artifact dir")
        self.info = read_artifact_info(self.model_dir)
        self.digest = artifact_digest(self.model_dir)
        if version:  # a registry version's name is what operators ask for and see
            self.info = replace(self.info, version=version)
        self._point_at(task or self.info.tasks[0])
        self.max_length = int(max_length or self.info.max_length)
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(self.model_dir / "tokenizer.json", self.max_length)
        self.session = make_session(model_path, threads)
        self._input_names = {i.name for i in self.session.get_inputs()}
        self._outputs = [h.output for h in self.info.heads.values()]
        # The pooled vector feeding the heads, when the graph exposes it (serve_app.model.drift_profile):
        # the drift watch compares it with the artifact's reference sample.
        outputs = {o.name for o in self.session.get_outputs()}
        self.embedding_output: str | None = EMBEDDING_OUTPUT if EMBEDDING_OUTPUT in outputs else None

    @property
    def version(self) -> str:
        return self.info.version

    def for_task(self, task: str) -> OnnxPredictor:
        """A view of the same session answering for another head (no second load)."""
        view = copy.copy(self)
        view._point_at(task)
        return view

    def copy_at(self, model_dir: Path, digest: str, task: str, version: str | None = None) -> OnnxPredictor:
        """This session answering as `model_dir` (whose `artifact_digest` is `digest`), a
        byte-identical copy of this artifact (one artifact pushed under each task's registry
        name): no second load, but that copy's directory and version (`version`, else its card's)."""
        model_dir = Path(model_dir)
        if digest != self.digest:
            raise ModelArtifactError(f"{model_dir} is not a copy of {self.model_dir}; load it on its own")
        view = self.for_task(task)
        view.model_dir = model_dir
        view.info = replace(view.info, version=version or read_artifact_info(model_dir).version)
        return view

    def _point_at(self, task: str) -> None:
        """Answer for `task`'s head (labels, temperature, counting) from now on."""
        if task not in self.info.heads:
            raise ModelArtifactError(
                f"{self.model_dir} has no {task!r} head; it has {', '.join(self.info.heads)}"
            )
        self.task, self.head = task, self.info.heads[task]
        self.labels = self.head.labels

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        encs = self.tokenizer.encode_batch([normalize_text(t) for t in texts])
        return [e.ids for e in encs]

    def run_ids(self, ids: list[list[int]]) -> dict[str, np.ndarray]:
        """Every head's logits for one padded model batch of token ids."""
        return self._run_ids(ids, embed=False)[0]

    def _run_ids(self, ids: list[list[int]], embed: bool) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        width = max(len(x) for x in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        embed = embed and self.embedding_output is not None
        outs = self.session.run(self._outputs + [EMBEDDING_OUTPUT] * embed, feeds)
        heads = dict(zip(self.info.heads, outs[: len(self._outputs)], strict=True))
        return heads, outs[-1] if embed else None

    def logits_all(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Raw logits of every head, each shaped (len(texts), n_labels), in input order.

        Texts are sorted by token length and cut into batches that pad little
        (`length_chunks`): on real posts this halves the work against input order, and a
        serving batch of short single texts of mixed lengths runs ~1.5x faster than as one
        padded batch (docs/benchmarks.md).
        """
        return self._forward(texts, embed=False)[0]

    def _forward(self, texts: Sequence[str], embed: bool) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        out = {t: np.empty((len(texts), len(h.labels)), dtype=np.float32) for t, h in self.info.heads.items()}
        vectors: np.ndarray | None = None
        if not texts:
            return out, vectors
        ids = self.encode(texts)
        for idx in length_chunks([len(x) for x in ids], self.batch_size):
            logits, emb = self._run_ids([ids[i] for i in idx], embed)
            for task, part in logits.items():
                out[task][idx] = part
            if emb is not None:
                if vectors is None:
                    vectors = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
                vectors[idx] = emb
        return out, vectors

    def probabilities_and_embeddings(
        self, texts: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """`probabilities_all` and, from the same pass, each text's pooled embedding (None when
        the graph has no embedding output: an artifact exported before drift profiles)."""
        logits, vectors = self._forward(texts, embed=True)
        probs = {t: softmax(lg, self.info.heads[t].temperature) for t, lg in logits.items()}
        return probs, vectors

    def probabilities_all(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Calibrated probabilities of every head from one pass over `texts`."""
        return {t: softmax(lg, self.info.heads[t].temperature) for t, lg in self.logits_all(texts).items()}

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.logits_all(texts)[self.task]

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(texts), self.head.temperature)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return probs_to_predictions(self.probabilities(texts), self.labels)


def probs_to_predictions(probs: np.ndarray, labels: Sequence[str]) -> list[Prediction]:
    result = []
    for row in probs:
        best = int(row.argmax())
        result.append(
            Prediction(
                label=labels[best],
                confidence=round(float(row[best]), 6),
                scores={lab: round(float(p), 6) for lab, p in zip(labels, row, strict=True)},
            )
        )
    return result
