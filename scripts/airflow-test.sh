#!/usr/bin/env bash
# The webtext DAG in a real Airflow, beside the project rather than inside it.
#
#   scripts/airflow-test.sh install        build the Airflow venv (skipped when it is up to date)
#   scripts/airflow-test.sh check REPORT   write the DAG-integrity report (scripts/check_dag.py)
#   scripts/airflow-test.sh run WORK_DIR   `airflow dags test webtext` on the demo config against
#                                          the loopback micro-web; the data lands in WORK_DIR/data
#
# Airflow pins its own dependency set, so it lives in its own venv ($AIRFLOW_VENV, default
# .airflow-venv); the stages run in the project's venv ($PROJECT_PYTHON, default .venv).
# tests/test_dag.py calls `check` and `run`, and checks the Parquet that `run` produced.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AIRFLOW_VENV="${AIRFLOW_VENV:-$REPO/.airflow-venv}"
PROJECT_PYTHON="${PROJECT_PYTHON:-$REPO/.venv/bin/python}"
# Versions verified to install together from PyPI alone (Airflow's constraints files live on
# GitHub). The Beam provider's operators refuse to construct without the Google provider on
# Airflow 3, whatever the runner, so it is pinned too; it also brings Dataflow support.
AIRFLOW_PINS=(
    "apache-airflow==3.3.2"
    "apache-airflow-providers-apache-beam==6.3.1"
    "apache-airflow-providers-google==22.8.0"
)
STAMP="$AIRFLOW_VENV/.webtext-installed"
MICROWEB_SEED="${MICROWEB_SEED:-1234}"

log() { printf '%s airflow-test: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

install() {
    local wanted="${AIRFLOW_PINS[*]}"
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$wanted" ]]; then
        log "$AIRFLOW_VENV is up to date"
        return
    fi
    local started=$SECONDS python="${PYTHON:-python3.11}"
    command -v "$python" >/dev/null || python=python3
    log "building $AIRFLOW_VENV with $wanted (a few minutes, once)"
    [[ -x "$AIRFLOW_VENV/bin/python" ]] || "$python" -m venv "$AIRFLOW_VENV"
    "$AIRFLOW_VENV/bin/python" -m pip install -q --disable-pip-version-check "${AIRFLOW_PINS[@]}" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    echo "$wanted" >"$STAMP"
    log "installed in $((SECONDS - started)) s"
}

# A throwaway Airflow: its own home, a SQLite database, only our DAG.
airflow_env() {
    export AIRFLOW_HOME="$1"
    export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
    export AIRFLOW__CORE__LOAD_EXAMPLES=False
    mkdir -p "$AIRFLOW_HOME"
}

check() {
    local report="$1" home
    home="$(mktemp -d)"
    airflow_env "$home"
    "$AIRFLOW_VENV/bin/python" "$REPO/scripts/check_dag.py" "$REPO/dags" "$report" >/dev/null
    rm -rf "$home"
}

run() {
    local work
    work="$(mkdir -p "$1" && cd "$1" && pwd)"
    [[ -x "$PROJECT_PYTHON" ]] || { log "no project venv at $PROJECT_PYTHON: run make install"; exit 2; }
    airflow_env "$work/airflow-home"
    local airflow="$AIRFLOW_VENV/bin/airflow"
    local started=$SECONDS
    "$airflow" db migrate >"$work/airflow-db.log" 2>&1
    "$airflow" pools set "${WEBTEXT_GPU_POOL:-gpu}" 1 "GPU slots for training" >/dev/null

    log "generating the micro-web (seed $MICROWEB_SEED)"
    "$PROJECT_PYTHON" -m pipeline.demo generate "$work/microweb" --seed "$MICROWEB_SEED"
    local port_file="$work/microweb.port"
    rm -f "$port_file"  # a rerun must wait for this server's port, not read the last one's
    "$PROJECT_PYTHON" -m pipeline.demo serve "$work/microweb/site" --port 0 \
        --port-file "$port_file" >"$work/microweb.log" 2>&1 &
    MICROWEB_PID=$!
    trap 'kill "$MICROWEB_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [[ -s "$port_file" ]] && break; sleep 0.1; done
    [[ -s "$port_file" ]] || { log "the micro-web did not start: see $work/microweb.log"; exit 2; }
    local port
    port="$(cat "$port_file")"
    log "micro-web on 127.0.0.1:$port"

    # The run's parameters, as `airflow dags trigger --conf` would pass them.
    local conf
    conf="$("$PROJECT_PYTHON" - "$REPO" "$work" "$port" "$PROJECT_PYTHON" <<'EOF'
import json, sys
repo, work, port, python = sys.argv[1:]
ranks = f"{repo}/../shared/tokenizers/r50k_base.tiktoken"
print(json.dumps({
    "config": f"{repo}/configs/demo.toml",
    "data_root": f"{work}/data",
    "python": python,
    # The micro-web spreads its submissions over 2008-2018, so the run takes the whole WebText
    # period rather than one month; tests/test_dag.py checks the monthly dates separately.
    "date_from": "2005-06-01",
    "date_to": "2018-01-01",
    "overrides": [
        f'links.dumps=["{work}/microweb/dumps/*.zst"]',
        f'fetch.resolve_overrides={{"*" = "127.0.0.1:{port}"}}',
        f'tokenizer.ranks_file="{ranks}"',
        # A few optimizer steps on one micro-batch each: enough to write a checkpoint.
        "train.max_steps=3",
        "train.total_batch_tokens=2048",
        "train.eval_every=3",
        "train.eval_batches=1",
        "train.checkpoint_every=3",
    ],
}))
EOF
)"
    echo "$conf" >"$work/conf.json"  # bench/airflow_dag.py replays the same run without Airflow
    # A failing task fails the run at once instead of waiting out the production retry delay.
    log "airflow dags test webtext ${LOGICAL_DATE:=2018-01-01}"
    WEBTEXT_RETRIES="${WEBTEXT_RETRIES:-0}" "$airflow" dags test webtext "$LOGICAL_DATE" \
        --conf "$conf" >"$work/dags-test.log" 2>&1 || {
        grep -E "error|Error|failed|FAILED" "$work/dags-test.log" | tail -20 >&2
        log "airflow dags test failed: the full log is $work/dags-test.log"
        exit 1
    }
    grep -q "state=success" "$work/dags-test.log" || {
        log "the DAG run did not succeed: see $work/dags-test.log"
        exit 1
    }
    log "DAG run succeeded in $((SECONDS - started)) s; data in $work/data"
}

case "${1:-}" in
    install) install ;;
    check) install && check "${2:?usage: $0 check REPORT_JSON}" ;;
    run) install && run "${2:?usage: $0 run WORK_DIR}" ;;
    *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
