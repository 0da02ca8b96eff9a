"""`predict_in_ingress`: short /predict calls answered by the ingress's copy of the model."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import MODEL_DIR, wait_for

pytestmark = pytest.mark.integration

APP, PREFIX = "inline", "/inline"
TEXTS = ["i am so happy today", "I can't believe they cancelled it, I'm furious", "i miss you so much"]


@pytest.fixture(scope="module")
def inline_url(serve_http: str) -> Iterator[str]:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"no model at {MODEL_DIR}")
    from ray import serve

    from deployments.app import AppArgs, make_app
    from serve_app.config.settings import ModelSettings, Settings

    args = AppArgs(
        model=ModelSettings(dir=MODEL_DIR, ort_threads=1, max_length=64),
        tasks=["emotion"],
        classifier_max_replicas=1,
        classifier_num_cpus=0.5,
        cache=False,
        history=False,
        predict_in_ingress=True,
    )
    settings = Settings(background=False, stores={"embedded": False, "redis_url": None, "postgres_url": None})
    serve.run(make_app(args, settings, app_name=APP), name=APP, route_prefix=PREFIX)
    yield serve_http + PREFIX
    serve.delete(APP)


def test_short_calls_move_to_the_ingress_and_answer_the_same(inline_url: str) -> None:
    with httpx.Client(base_url=inline_url, timeout=60) as client:
        first = client.post("/predict", json={"texts": TEXTS})
        assert first.status_code == 200, first.text
        # The ingress had no model yet: the Classifier answered while the ingress loads its copy.
        assert first.headers["x-inference"] == "classifier"

        def inline() -> httpx.Response | None:
            r = client.post("/predict", json={"texts": TEXTS})
            return r if r.headers.get("x-inference") == "ingress" else None

        second = wait_for(inline, 30)
        assert second is not None, "the ingress never took over short /predict calls"
        a, b = first.json(), second.json()
        assert a["model_version"] == b["model_version"]
        for x, y in zip(a["predictions"], b["predictions"], strict=True):
            assert x["label"] == y["label"]
            assert x["confidence"] == pytest.approx(y["confidence"], abs=2e-3)

        # Over 8 texts the call goes to the Classifier (it would hold the ingress's loop).
        many = client.post("/predict", json={"texts": TEXTS * 3})
        assert many.status_code == 200 and many.headers["x-inference"] == "classifier"
        assert [p["label"] for p in many.json()["predictions"][:3]] == [p["label"] for p in a["predictions"]]
        # Input errors are unchanged on the inline path.
        assert client.post("/predict", json={"text": " "}).status_code == 422
        bad_task = client.post("/predict", json={"text": "hi", "task": "sentiment"})
        assert bad_task.status_code == 400 and "not served" in bad_task.text
