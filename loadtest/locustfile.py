"""Locust load test for emotion-monitor: the real request mix.

Users (weights set the mix):
- `PredictSingleUser`: POST /predict with one text drawn from a sample file
- `PredictSentimentUser`: POST /predict with one text and `"task": "sentiment"`
- `PredictBatchUser`: POST /predict with 64 texts
- `AnalyzeHotUser`: POST /analyze on a few hot keywords (cache hits after the first)
- `AnalyzeColdUser`: POST /analyze on rarely repeated keywords with random limits (misses)

Run it headless against a running service (`make run` in another shell):

    emotion-monitor loadtest --users 32 --duration 60 --host http://127.0.0.1:8000
    # or Locust itself:
    locust -f loadtest/locustfile.py --headless -u 32 -r 8 -t 60s --host http://127.0.0.1:8000 \\
        --csv runs/locust/run --html runs/locust/report.html
    # one user class only:
    locust -f loadtest/locustfile.py --headless -u 32 -r 32 -t 30s --host ... PredictSingleUser
    # the burst shape (ramp up, hold, ramp down) instead of a fixed user count:
    EM_SHAPE=burst locust -f loadtest/locustfile.py --headless --host ...

Texts come from $EM_TEXTS (JSONL with a "text" field), by default the Reddit validation
comments in ../shared/data; without it, a small built-in list.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import FastHttpUser, LoadTestShape, between, constant, task
from locust.exception import StopUser

_FALLBACK = [
    "i am so happy today",
    "this makes me so angry",
    "I miss my dog so much",
    "I'm terrified of the exam tomorrow",
    "wow, I did not expect that at all",
    "I love you all",
]
HOT = ["AI", "python", "game", "money", "music"]
COLD = [
    "coffee",
    "bicycle",
    "garden",
    "tea",
    "startup",
    "anxiety",
    "travel",
    "books",
    "dogs",
    "cats",
    "cooking",
    "running",
    "weather",
    "science",
    "space",
    "movies",
    "college",
    "jobs",
    "beer",
    "apple",
]


def _load_texts() -> list[str]:
    path = Path(os.environ.get("EM_TEXTS", "../shared/data/reddit_emotion/validation.jsonl"))
    if not path.is_file():
        return _FALLBACK
    texts = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                t = json.loads(line).get("text")
                if isinstance(t, str) and t.strip():
                    texts.append(t)
    return texts or _FALLBACK


TEXTS = _load_texts()
SENTIMENT = {"negative", "neutral", "positive"}


class PredictSingleUser(FastHttpUser):
    weight = 10
    wait_time = constant(0)

    @task
    def predict_one(self) -> None:
        with self.client.post(
            "/predict", json={"text": random.choice(TEXTS)}, name="/predict [1]", catch_response=True
        ) as r:
            if r.status_code != 200 or len(r.json()["predictions"]) != 1:
                r.failure(f"HTTP {r.status_code}")


class PredictSentimentUser(FastHttpUser):
    weight = 4
    wait_time = constant(0)

    def on_start(self) -> None:
        # A service without the sentiment model answers 400 by design; that is not a
        # failure of the service under load, so this user bows out instead of counting it.
        r = self.client.get("/labels", name="/labels")
        if r.status_code == 200 and "sentiment" not in r.json().get("tasks", {}):
            raise StopUser()

    @task
    def predict_sentiment(self) -> None:
        body = {"text": random.choice(TEXTS), "task": "sentiment"}
        name = "/predict [1, sentiment]"
        with self.client.post("/predict", json=body, name=name, catch_response=True) as r:
            if r.status_code != 200 or r.json()["predictions"][0]["label"] not in SENTIMENT:
                r.failure(f"HTTP {r.status_code}")


class PredictBatchUser(FastHttpUser):
    weight = 2
    wait_time = between(0.05, 0.2)

    @task
    def predict_batch(self) -> None:
        batch = random.sample(TEXTS, min(64, len(TEXTS)))
        with self.client.post(
            "/predict", json={"texts": batch}, name="/predict [64]", catch_response=True
        ) as r:
            if r.status_code != 200 or len(r.json()["predictions"]) != len(batch):
                r.failure(f"HTTP {r.status_code}")


class AnalyzeHotUser(FastHttpUser):
    weight = 3
    wait_time = between(0.1, 0.5)

    @task
    def analyze_hot(self) -> None:
        body = {"keyword": random.choice(HOT), "limit": 250, "source": "jsonl"}
        with self.client.post("/analyze", json=body, name="/analyze [hot]", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")


class AnalyzeColdUser(FastHttpUser):
    weight = 1
    wait_time = between(1, 3)

    @task
    def analyze_cold(self) -> None:
        # A random limit makes a new cache key: these are misses that run inference.
        body = {"keyword": random.choice(COLD), "limit": random.randint(20, 120), "source": "jsonl"}
        with self.client.post("/analyze", json=body, name="/analyze [cold]", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")


RAMP_S = int(os.environ.get("EM_RAMP_S", 20))
HOLD_S = int(os.environ.get("EM_HOLD_S", 40))
PEAK_USERS = int(os.environ.get("EM_PEAK_USERS", 64))

if os.environ.get("EM_SHAPE") == "burst":

    class BurstShape(LoadTestShape):
        """The seed's stress burst as a shape: ramp to many users, hold, ramp down, stop."""

        def tick(self) -> tuple[int, float] | None:
            t = self.get_run_time()
            if t < RAMP_S:
                return PEAK_USERS, PEAK_USERS / RAMP_S  # ramp up
            if t < RAMP_S + HOLD_S:
                return PEAK_USERS, PEAK_USERS  # hold
            if t < 2 * RAMP_S + HOLD_S:
                return 1, PEAK_USERS / RAMP_S  # ramp down
            return None  # stop
