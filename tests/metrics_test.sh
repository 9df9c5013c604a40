#!/usr/bin/env bash
# Scrapes a real node's GET /metrics and checks it with promtool (Debian's `prometheus` package,
# installed by scripts/install-deps.sh). A missing promtool fails the test: it is not optional.
# Then checks deploy/prometheus-rules.yml (promtool check rules) and that every metric it and
# deploy/grafana-dashboard.json name is exposed by the node.
# Usage: metrics_test.sh PATH/TO/drover
set -euo pipefail

drover=${1:?usage: metrics_test.sh PATH/TO/drover}
if ! command -v promtool >/dev/null; then
  echo "FAIL: promtool is missing (apt-get install prometheus; scripts/install-deps.sh does it)"
  exit 1
fi

work=$(mktemp -d /tmp/drover-metrics-test-XXXXXX)
up_pid=""
cleanup() {
  if [[ -n "$up_pid" ]] && kill -0 "$up_pid" 2>/dev/null; then
    kill -TERM "$up_pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$up_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# waitFor DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds or the deadline passes.
waitFor() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "FAIL: timed out waiting for $what"
      echo "--- drover up output:"; cat "$work/up.log" || true
      exit 1
    fi
    sleep 0.2
  done
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$drover" up --nodes 1 --http-port "$port" >"$work/up.log" 2>&1 &
up_pid=$!
waitFor "the cluster to come up" 90 grep -q "Drover is up" "$work/up.log"

export DROVER_SERVER="http://127.0.0.1:$port"
"$drover" submit --wait --type noop >/dev/null
"$drover" submit --wait --type fail --payload '{"message": "on purpose \"quoted\""}' \
  >/dev/null || true
# A submission the API rejects (unknown type), counted as rejected.
"$drover" submit --type no-such-type >/dev/null 2>&1 || true

scrape() { curl -fsS "$DROVER_SERVER/metrics" >"$work/metrics.txt"; }
hasAll() {
  scrape || return 1
  local name
  for name in "$@"; do grep -q "^$name" "$work/metrics.txt" || return 1; done
}
expected=(
  'drover_tasks_submitted_total{result="created"} 2'
  'drover_tasks_submitted_total{result="rejected"} 1'
  'drover_tasks_completed_total{outcome="succeeded"} 1'
  'drover_tasks_completed_total{outcome="failed"} '
  'drover_task_duration_seconds_bucket{le="+Inf"} '
  'drover_task_queue_wait_seconds_count '
  'drover_zookeeper_request_duration_seconds_bucket{op="multi",le="+Inf"} '
  'drover_zookeeper_connected 1'
  'drover_leader 1'
  'drover_leader_epoch '
  'drover_leader_changes_total 1'
  'drover_cluster_workers 1'
  'drover_cluster_slots '
  'drover_queue_tasks{state="pending",priority="5"} 0'
  'drover_worker_slots '
)
waitFor "every expected series in /metrics" 30 hasAll "${expected[@]}"

echo "--- promtool check metrics"
if ! promtool check metrics <"$work/metrics.txt"; then
  echo "FAIL: promtool rejects the exposition:"; cat "$work/metrics.txt"
  exit 1
fi
# The content type of the text format 0.0.4.
ctype=$(curl -fsS -o /dev/null -w '%{content_type}' "$DROVER_SERVER/metrics")
[[ "$ctype" == text/plain*version=0.0.4* ]] || { echo "FAIL: content type $ctype"; exit 1; }
# The monitoring files under deploy/: the alert rules parse (promtool), and every metric the rules
# and the Grafana dashboard's queries name is one this node exposes.
deploy=$(cd "$(dirname "$0")/../deploy" && pwd)
echo "--- promtool check rules deploy/prometheus-rules.yml"
promtool check rules "$deploy/prometheus-rules.yml" || { echo "FAIL: promtool rejects the rules"; exit 1; }
echo "--- deploy/ metric names against /metrics"
scrape
check="$(dirname "$0")/deploy_metrics_check.py"
/usr/bin/python3 "$check" "$work/metrics.txt" "$deploy/grafana-dashboard.json" \
  "$deploy/prometheus-rules.yml" || exit 1
# The check must catch a name the node does not expose.
printf 'expr: rate(drover_no_such_series_total[5m])\n' >"$work/planted.yml"
if /usr/bin/python3 "$check" "$work/metrics.txt" "$work/planted.yml" >/dev/null; then
  echo "FAIL: the metric-name check accepts drover_no_such_series_total"; exit 1
fi
echo "PASS"
