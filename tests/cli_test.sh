#!/usr/bin/env bash
# The client commands as a user meets them (docs/CLI.md): messages and exit codes for mistakes
# (no server needed), then against a real cluster (`drover up --nodes 1` plus a labelled node on
# its ZooKeeper, free loopback ports): tables, paging, timeouts, --server over DROVER_SERVER.
# Ends only the processes it started, by PID.  Usage: cli_test.sh PATH/TO/drover [offline]
set -euo pipefail

drover=${1:?usage: cli_test.sh PATH/TO/drover [offline]}
mode=${2:-full}
work=$(mktemp -d /tmp/drover-cli-test-XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# run NAME ARGS...: runs drover ARGS, keeping its exit code in $rc, stdout in $out, stderr in $err.
run() {
  rc=0
  "$drover" "$@" >"$work/out" 2>"$work/err" || rc=$?
  out=$(cat "$work/out")
  err=$(cat "$work/err")
}
expectRc() { [[ "$rc" == "$1" ]] || fail "$2: exit $rc, want $1 (stdout: $out; stderr: $err)"; }
expectIn() { [[ "$1" == *"$2"* ]] || fail "$3: '$2' not in: $1"; }
expectNotIn() { [[ "$1" != *"$2"* ]] || fail "$3: '$2' in: $1"; }

freePort() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
dead="http://127.0.0.1:$(freePort)"  # nobody listens there

echo "--- mistakes, no server needed"
run frobnicate
expectRc 2 "unknown command"
expectIn "$err" "unknown command 'frobnicate'" "unknown command"
expectIn "$err" "submit, status, wait" "unknown command lists the commands"
run submit --wiat -- echo hi
expectRc 2 "mistyped flag"
expectIn "$err" "unknown option '--wiat'" "mistyped flag"
expectNotIn "$err" "--wiat --" "mistyped flag blames --"
run tasks --limt 3
expectIn "$err" "drover tasks: unknown option '--limt'" "mistyped flag of tasks"
run status some-id --server "$dead"
expectRc 3 "unreachable"
expectIn "$err" "no answer from $dead (could not connect)" "unreachable names the server and why"
expectIn "$err" "drover up" "unreachable says what to check"
run status some-id --server 127.0.0.1:8080
expectRc 2 "a --server without http://"
expectIn "$err" "is not an API address" "a --server without http://"
run tasks --limit 0 --server "$dead"
expectRc 2 "--limit 0"

if [[ "$mode" == offline ]]; then
  ((failures == 0)) && echo PASS && exit 0
  exit 1
fi

echo "--- a cluster: drover up --nodes 1, and a node labelled gpu"
port=$(freePort)
"$drover" up --nodes 1 --http-port "$port" >"$work/up.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 90))
until grep -q "Drover is up" "$work/up.log"; do
  if ((SECONDS >= deadline)) || ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "FAIL: the cluster did not come up"; cat "$work/up.log"; exit 1
  fi
  sleep 0.2
done
zk=$(sed -n 's/.*ZooKeeper at \([0-9.:]*\).*/\1/p' "$work/up.log" | head -n 1)
port2=$(freePort)
env -u DROVER_WORKER "$drover" node --zk "$zk" --http "127.0.0.1:$port2" --id labelled-node \
  --label gpu --label big --no-leader >"$work/node2.log" 2>&1 &
pids+=($!)
server="http://127.0.0.1:$port"
deadline=$((SECONDS + 60))
until "$drover" workers --server "$server" 2>/dev/null | grep -q labelled-node; do
  ((SECONDS < deadline)) || { echo "FAIL: the labelled node did not join"; cat "$work/node2.log"; exit 1; }
  sleep 0.2
done

# The flag wins over the variable, and a trailing slash is fine.
DROVER_SERVER="$dead" run cluster --server "$server/"
expectRc 0 "--server with a trailing slash over DROVER_SERVER"
DROVER_SERVER="$server" run cluster
expectRc 0 "DROVER_SERVER alone"
DROVER_SERVER="$dead" run cluster
expectRc 3 "DROVER_SERVER alone, unreachable"

run cluster --server "$server"
expectIn "$out" "leader:     node-1 (epoch" "cluster table: leader"
expectIn "$out" "zookeeper:  connected" "cluster table: zookeeper"
expectIn "$out" "workers:    2" "cluster table: workers"
expectIn "$out" "pending:" "cluster table: task counts"
expectNotIn "$out" "{" "cluster prints a table, not JSON"
run cluster --server "$server" --json
[[ $(printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["workers"])') == 2 ]] ||
  fail "cluster --json: $out"

run workers --server "$server"
expectIn "$out" "LABELS" "workers header"
expectIn "$(grep labelled-node <<<"$out")" "gpu,big" "workers: the labels of labelled-node"
expectIn "$(grep node-1 <<<"$out")" "leader" "workers: the leader"

# wait --timeout: exit 7 with a message.
run submit --server "$server" --type sleep --payload '{"ms": 30000}' --id cli-slow
expectRc 0 "submit a slow task"
run wait cli-slow --timeout 1 --server "$server"
expectRc 7 "wait --timeout 1"
expectIn "$err" "timed out after 1 s: task cli-slow is still" "wait --timeout says so"
run cancel cli-slow --server "$server"
expectRc 0 "cancel"

# tasks: newest first, --limit, --cursor, "showing N of M".
for id in cli-page-3 cli-page-1 cli-page-2; do
  run submit --server "$server" --type noop --id "$id"
  expectRc 0 "submit $id"
done
# The total comes from GET /v1/cluster, whose counts a node caches for about a second.
deadline=$((SECONDS + 10))
while run tasks --server "$server" --limit 2; [[ "$out" != *"showing 2 of 4 tasks"* ]]; do
  ((SECONDS < deadline)) || break
  sleep 0.2
done
expectRc 0 "tasks --limit 2"
rows=$(awk 'NR > 1 && $1 ~ /^cli-/ {print $1}' <<<"$out" | tr '\n' ' ')
[[ "$rows" == "cli-page-2 cli-page-1 " ]] || fail "tasks newest first: got '$rows' in: $out"
expectIn "$out" "showing 2 of 4 tasks, newest first" "tasks: showing N of M"
cursor=$(sed -n 's/^next page: .* --cursor \(.*\)$/\1/p' <<<"$out")
[[ -n "$cursor" ]] || fail "tasks: no next-page line in: $out"
run tasks --server "$server" --limit 2 --cursor "$cursor"
rows=$(awk 'NR > 1 && $1 ~ /^cli-/ {print $1}' <<<"$out" | tr '\n' ' ')
[[ "$rows" == "cli-page-3 cli-slow " ]] || fail "tasks --cursor: got '$rows' in: $out"
expectNotIn "$out" "next page:" "the last page has no next page"
deadline=$((SECONDS + 10))
while run tasks --server "$server" --state cancelled; [[ "$out" != *"showing 1 of 1 "* ]]; do
  ((SECONDS < deadline)) || break
  sleep 0.2
done
expectIn "$out" "showing 1 of 1 cancelled tasks" "tasks --state"
run tasks --server "$server" --state bogus
expectRc 5 "tasks --state bogus"
expectIn "$err" "state:" "tasks --state bogus names the field"
run tasks --server "$server" --state 'a b&limit=1'
expectRc 5 "tasks --state with a space and an ampersand"
expectIn "$err" "state:" "a --state with a space reaches the server as one value"

# Exit 4 for an unknown task (docs/CLI.md's exit codes).
for cmd in status wait cancel; do
  run "$cmd" no-such-task --server "$server"
  expectRc 4 "$cmd of an unknown task"
  expectIn "$err" "404" "$cmd of an unknown task says 404"
done

# --after: the dependent runs once its dependency succeeded; an unknown one is a 400 (exit 5).
run submit --server "$server" --type noop --id cli-dep-root
expectRc 0 "submit a dependency"
run submit --server "$server" --type echo --payload '{"after": "root"}' --id cli-dep-child \
  --after cli-dep-root --wait
expectRc 0 "submit --after --wait"
expectIn "$out" "succeeded" "the dependent ran"
run submit --server "$server" --type noop --after no-such-task
expectRc 5 "submit --after an unknown task"
expectIn "$err" "no task 'no-such-task'" "the refusal names the unknown dependency"

((failures == 0)) || { echo "$failures failure(s)"; exit 1; }
echo PASS
