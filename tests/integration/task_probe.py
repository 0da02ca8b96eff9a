"""Run with a copy of the service on PYTHONPATH whose registry declares a third task,
`toxicity` (tests/integration/test_task_registry.py): prints what each part made of it."""

import base64
import json
import struct
import sys

import psycopg
from pydantic import ValidationError

import serve_app
from serve_app.domain.posts import Post
from serve_app.domain.question import Question
from serve_app.domain.schemas import Analysis, AnalyzeRequest, AnalyzeResponse, PredictRequest
from serve_app.domain.tasks import TASK_NAMES, check_head
from serve_app.flow.aggregate import summarize
from serve_app.monitoring.trends import spike_rules
from serve_app.stores.history import insert_records, make_record

dsn = sys.argv[1]
out: dict[str, object] = {"package": serve_app.__file__, "tasks": list(TASK_NAMES)}
out["request_tasks"] = AnalyzeRequest(keyword="x", tasks=["toxicity"]).tasks
out["predict_task"] = PredictRequest(text="x", task="toxicity").task
try:
    AnalyzeRequest(keyword="x", tasks=["bogus"])
    out["bogus_refused"] = False
except ValidationError:
    out["bogus_refused"] = True
out["response_fields"] = [f for f in AnalyzeResponse.model_fields if f.endswith("agg")]
check_head("toxicity", ["ok", "toxic"], "probe")

emo = ("sadness", "joy", "love", "anger", "fear", "surprise", "neutral")


def row(label: str, labels: tuple[str, ...]) -> dict[str, object]:
    return {
        "label": label,
        "confidence": 0.9,
        "scores": {x: 0.9 if x == label else 0.1 / (len(labels) - 1) for x in labels},
    }


preds = {
    "emotion": [row("joy", emo), row("anger", emo), row("neutral", emo), row("joy", emo)],
    "toxicity": [
        row("ok", ("ok", "toxic")),
        row("toxic", ("ok", "toxic")),
        row("ok", ("ok", "toxic")),
        row("ok", ("ok", "toxic")),
    ],
}
summary = summarize("probe", preds, True, {})
out["breakdown"] = {r["label"]: r["pct"] for r in summary.breakdowns["toxicity_agg"]}
png = base64.b64decode(summary.plot_base64)
out["chart_width"] = struct.unpack(">I", png[16:20])[0]  # a panel per task, 750 px each

versions = {"emotion": "emo-1", "toxicity": "tox-1"}
analysis = Analysis.model_validate(
    {
        **summary.breakdowns,
        "keyword": "probe",
        "count": 4,
        "tasks": list(preds),
        "model_versions": versions,
        "model_version": "emo-1",
        "post_source": "jsonl",
    }
)
out["answer_field"] = [r["label"] for r in analysis.model_dump()["toxicity_agg"]]
q = Question("probe", 4, "jsonl", tuple(preds), 0.8)
out["key_names_task"] = q.key(versions) != q.key({"emotion": "emo-1"})
posts = [Post(f"tx{i}", f"title {i}", "", "s", 1.7e9 + i, 1, "") for i in range(4)]
rec = make_record(q, analysis, posts, preds)
with psycopg.connect(dsn) as conn:
    insert_records(conn, [rec])
    conn.commit()
    qid = rec["query_id"]
    out["predictions"] = dict(
        conn.execute(
            "SELECT task, count(*) FROM predictions WHERE query_id = %s GROUP BY task", (qid,)
        ).fetchall()
    )
    out["aggregates"] = dict(
        conn.execute(
            "SELECT label, pct FROM query_aggregates WHERE query_id = %s AND task = 'toxicity'", (qid,)
        ).fetchall()
    )
    out["versions"] = conn.execute(
        "SELECT model_versions FROM queries WHERE query_id = %s", (qid,)
    ).fetchone()[0]
out["spike_rules"] = sorted([r.task, r.label] for r in spike_rules())
print(json.dumps(out))
