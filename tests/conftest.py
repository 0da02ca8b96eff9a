"""Shared fixtures: where the shared data and the committed model are, and skips when not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("EMOTION_MONITOR_DATA_ROOT", ROOT.parent / "shared" / "data"))
MODEL_DIR = ROOT / "models" / "emotion"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "emotion" / "test.jsonl").is_file():
        pytest.skip(f"shared data not found at {DATA_ROOT} (a fresh clone has no ../shared)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"no committed model at {MODEL_DIR}")
    return MODEL_DIR
