#!/usr/bin/env bash
# The main job: start the service (filled in by the Serve graph).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/emotion-monitor predict "i am so happy today"
