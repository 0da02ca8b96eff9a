#!/usr/bin/env bash
# Start the local PostgreSQL and Redis the tests talk to, installing them if missing.
# Only loopback; nothing here touches a configured remote service.
set -uo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo -n"

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if ! redis_up; then
  command -v redis-server >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server; }
  mkdir -p /tmp/redis-ci
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/redis-ci \
    --logfile /tmp/redis-ci/redis.log
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
fi
if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || $SUDO pg_ctlcluster "$ver" main start
  for _ in $(seq 100); do pg_up && break; sleep 0.1; done
fi
# A real browser for the dashboard's page test (tests/integration/test_dashboard.py).
if ! command -v chromedriver >/dev/null; then
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; } \
    >/dev/null 2>&1 && echo "services: chromium + chromedriver installed" \
    || echo "services: chromium not installed; the dashboard page test will skip" >&2
fi
redis_up && echo "services: redis up on 127.0.0.1:6379" || echo "services: redis NOT up" >&2
pg_up && echo "services: postgres up on 127.0.0.1:5432" || echo "services: postgres NOT up" >&2
redis_up && pg_up
