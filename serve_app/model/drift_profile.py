"""A model artifact's reference profile: what its inputs and outputs looked like at export.

Two files beside model.onnx: `reference_profile.json` (per head: the labelled validation
mix, the predicted mix and a sample of confidences on the reference texts, validation
accuracy) and `reference_embeddings.npy` (a float16 sample of pooled sentence embeddings,
the graph's `embedding` output). Written by `training.profile`; read by the drift watch.
An artifact without them still serves: its drift checks say "no reference".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

PROFILE_FILE = "reference_profile.json"
EMBEDDINGS_FILE = "reference_embeddings.npy"
EMBEDDING_OUTPUT = "embedding"  # the ONNX output holding the pooled vector that feeds the heads


@dataclass(frozen=True)
class HeadReference:
    labels: tuple[str, ...]
    predicted_counts: tuple[int, ...]  # the model's labels on the reference texts
    confidences: tuple[float, ...]  # max calibrated probability per reference text, sorted
    true_mix: tuple[float, ...] | None = None  # labelled validation mix, when labels exist
    accuracy: float | None = None  # on the labelled validation set
    data: str = ""  # which texts

    def histogram(self, bins: int = 10) -> list[int]:
        """Confidence histogram over [0, 1] (for people; the KS test uses the sample)."""
        return np.histogram(self.confidences, bins=bins, range=(0.0, 1.0))[0].tolist()


@dataclass(frozen=True)
class ReferenceProfile:
    heads: dict[str, HeadReference]
    embeddings: np.ndarray | None  # (n, hidden) float16
    made_from: str  # what the reference texts were, for /drift and the alert

    def to_json(self) -> dict[str, object]:
        heads = {
            task: asdict(h) | {"confidence_histogram": h.histogram(),
                               "confidence_quantiles": quantiles(h.confidences)}
            for task, h in self.heads.items()
        }  # fmt: skip
        n = 0 if self.embeddings is None else len(self.embeddings)
        return {"format": 1, "made_from": self.made_from, "embeddings": n, "heads": heads}


def quantiles(values: tuple[float, ...]) -> dict[str, float]:
    if not values:
        return {}
    qs = np.quantile(np.asarray(values), [0.05, 0.25, 0.5, 0.75, 0.95])
    return {k: round(float(v), 4) for k, v in zip(("p05", "p25", "p50", "p75", "p95"), qs, strict=True)}


def save_profile(model_dir: Path, profile: ReferenceProfile) -> list[Path]:
    paths = [model_dir / PROFILE_FILE]
    paths[0].write_text(json.dumps(profile.to_json(), indent=1))
    if profile.embeddings is not None:
        paths.append(model_dir / EMBEDDINGS_FILE)
        np.save(paths[1], profile.embeddings.astype(np.float16))
    return paths


def load_profile(model_dir: Path) -> ReferenceProfile | None:
    """The artifact's profile, or None when it has none (older artifacts)."""
    path = Path(model_dir) / PROFILE_FILE
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    heads = {
        str(task): HeadReference(
            labels=tuple(h["labels"]),
            predicted_counts=tuple(int(c) for c in h["predicted_counts"]),
            confidences=tuple(float(c) for c in h["confidences"]),
            true_mix=None if h.get("true_mix") is None else tuple(float(x) for x in h["true_mix"]),
            accuracy=None if h.get("accuracy") is None else float(h["accuracy"]),
            data=str(h.get("data", "")),
        )
        for task, h in meta["heads"].items()
    }
    emb_path = Path(model_dir) / EMBEDDINGS_FILE
    embeddings = np.load(emb_path) if emb_path.is_file() else None
    return ReferenceProfile(heads, embeddings, str(meta.get("made_from", "")))
