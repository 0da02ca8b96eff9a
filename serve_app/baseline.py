"""The reference system's serving design, for benchmarks: one FastAPI process, ONNX Runtime,
no batching, the same model. `uvicorn serve_app.baseline:app --port 8100`."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import FastAPI

from serve_app.predictor import OnnxPredictor
from serve_app.schemas import PredictRequest

app = FastAPI(title="emotion-monitor baseline (single process, no batching)")
_predictor: OnnxPredictor | None = None


def predictor() -> OnnxPredictor:
    global _predictor
    if _predictor is None:
        _predictor = OnnxPredictor(
            os.environ.get("EMOTION_MONITOR_MODEL_DIR", "models/emotion"),
            threads=int(os.environ.get("EMOTION_MONITOR_ORT_THREADS", "2")),
            max_length=int(os.environ.get("EMOTION_MONITOR_MAX_LENGTH", "128")),
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
