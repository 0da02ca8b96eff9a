"""The reference system's serving design, for benchmarks: one FastAPI process, ONNX Runtime,
no batching, the same model. `uvicorn tooling.bench.baseline:app --port 8100`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI

from serve_app.config.settings import get_settings
from serve_app.domain.schemas import PredictRequest
from serve_app.model.predictor import OnnxPredictor

app = FastAPI(title="emotion-monitor baseline (single process, no batching)")
_predictor: OnnxPredictor | None = None


def predictor() -> OnnxPredictor:
    global _predictor
    if _predictor is None:
        s = get_settings()
        _predictor = OnnxPredictor(
            s.model.dir, threads=s.model.ort_threads or 2, max_length=s.model.max_length
        )
    return _predictor


@app.post("/predict")
def predict(req: PredictRequest) -> dict[str, Any]:
    started = time.perf_counter()
    p = predictor()
    preds = p.predict(req.all_texts())
    return {
        "predictions": [x.as_dict() for x in preds],
        "model_version": p.version,
        "time": round(time.perf_counter() - started, 4),
    }
