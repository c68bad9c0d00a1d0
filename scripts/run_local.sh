#!/usr/bin/env bash
# `make run`: migrate the embedded SQLite database, load the demo program once, compute the KPIs and
# the pipeline forecast, then serve with a Celery worker and beat on the filesystem broker (no Redis).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export DEBUG="${DEBUG:-1}"
export PRM_VAR_DIR="${PRM_VAR_DIR:-$PWD/var}"
mkdir -p "$PRM_VAR_DIR"

$PY manage.py migrate --no-input
$PY manage.py seed_demo --if-empty
$PY manage.py recompute_kpis --trigger command
# The forecast pages read a stored forecast: the publication's task would store it once the worker
# below starts; computed here, the pages show it from the first request.
$PY manage.py compute_forecast

.venv/bin/celery -A prm worker --beat --pool=solo --concurrency=1 --loglevel=warning \
    --schedule "$PRM_VAR_DIR/celerybeat-schedule" >"$PRM_VAR_DIR/celery.log" 2>&1 &
CELERY_PID=$!
trap 'kill $CELERY_PID 2>/dev/null || true' EXIT INT TERM

$PY manage.py demo_logins
echo "Celery worker + beat log: $PRM_VAR_DIR/celery.log"
$PY manage.py shell --no-imports -c "from prm.email import describe_mail_delivery; print(describe_mail_delivery())"
$PY manage.py runserver 127.0.0.1:8000
