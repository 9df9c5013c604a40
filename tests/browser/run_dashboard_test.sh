#!/usr/bin/env bash
# The dashboard's real-browser test (ctest -R dashboard_browser_test): starts a local cluster
# (`drover up --nodes 2`, its own ZooKeeper, loopback, free ports), then drives Debian's Chromium
# with playwright-core (dashboard_test.mjs). Stops the cluster with SIGINT on any exit.
#   usage: run_dashboard_test.sh DROVER_BINARY ARTIFACT_DIR
set -euo pipefail

drover=${1:?usage: run_dashboard_test.sh DROVER_BINARY ARTIFACT_DIR}
artifacts=${2:?usage: run_dashboard_test.sh DROVER_BINARY ARTIFACT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
chromium=${DROVER_CHROMIUM:-/usr/bin/chromium}

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (scripts/install-deps.sh)"; exit 1; }
done
[[ -x "$chromium" ]] || { echo "FAIL: $chromium is missing (scripts/install-deps.sh)"; exit 1; }

# playwright-core from the lock file, once; it never downloads a browser (we use Debian's).
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/drover-dashboard-test.XXXXXX")
up_pid=""
cleanup() {
  local rc=$?
  if [[ -n "$up_pid" ]] && kill -0 "$up_pid" 2>/dev/null; then
    kill -INT "$up_pid" 2>/dev/null || true
    # drover up stops its nodes and ZooKeeper, then exits; give it 30 s, then force it.
    for _ in $(seq 300); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$up_pid" 2>/dev/null; then
      echo "drover up did not stop on SIGINT; killing it"
      kill -KILL "$up_pid" 2>/dev/null || true
    fi
    wait "$up_pid" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f "$work/up.log" ]]; then
    echo "---- drover up output ----"
    cat "$work/up.log"
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two consecutive free loopback ports for the two nodes (node i serves port + i).
port=$(node -e '
const net = require("net");
const free = (p) => new Promise((ok) => { const s = net.createServer(); s.once("error", () => ok(false));
  s.listen(p, "127.0.0.1", () => s.close(() => ok(true))); });
(async () => { for (let i = 0; i < 200; i++) { const p = 20000 + Math.floor(Math.random() * 30000);
  if (await free(p) && await free(p + 1)) { console.log(p); return; } } process.exit(1); })();')

: >"$work/up.log"
# Protocol 2: retry and the per-attempt history (docs/WORKFLOWS.md) exist only there.
DROVER_PROTOCOL=2 "$drover" up --nodes 2 --http-port "$port" >"$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 600); do   # up to 60 s: ZooKeeper (Java) and two nodes
  grep -q "Drover is up" "$work/up.log" && break
  kill -0 "$up_pid" 2>/dev/null || { echo "FAIL: drover up exited early"; exit 1; }
  sleep 0.1
done
grep -q "Drover is up" "$work/up.log" || { echo "FAIL: drover up did not come up in 60 s"; exit 1; }

# The ZooKeeper of this cluster: the java child of this drover up (the test pauses and resumes it).
zk_pid=$(ps --ppid "$up_pid" -o pid=,comm= | awk '$2 == "java" {print $1}')
[[ "$zk_pid" =~ ^[0-9]+$ ]] || { echo "FAIL: cannot find the ZooKeeper process of drover up ($up_pid)"; exit 1; }

mkdir -p "$artifacts"
node "$here/dashboard_test.mjs" --url "http://127.0.0.1:$port/" --chromium "$chromium" \
  --profile "$work/profile" --screenshot "$artifacts/dashboard.png" --zk-pid "$zk_pid"

# The same page against a node with API tokens (docs/SECURITY.md): stop this cluster, start one
# whose node reads its tokens from DROVER_TOKENS (drover up's nodes inherit the environment).
kill -INT "$up_pid"
for _ in $(seq 300); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
wait "$up_pid" 2>/dev/null || true
read_json=$("$drover" token new --role read --json)
submit_json=$("$drover" token new --role submit --json)
field() { node -e 'const j = JSON.parse(process.argv[1]); console.log(j[process.argv[2]]);' "$1" "$2"; }
: >"$work/up.log"
DROVER_TOKENS="$(field "$read_json" config),$(field "$submit_json" config)" \
  "$drover" up --nodes 1 --http-port "$port" >"$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 600); do
  grep -q "Drover is up" "$work/up.log" && break
  kill -0 "$up_pid" 2>/dev/null || { echo "FAIL: drover up (with tokens) exited early"; exit 1; }
  sleep 0.1
done
grep -q "Drover is up" "$work/up.log" || { echo "FAIL: drover up (with tokens) did not come up"; exit 1; }
node "$here/dashboard_auth_test.mjs" --url "http://127.0.0.1:$port/" --chromium "$chromium" \
  --profile "$work/profile-auth" --read "$(field "$read_json" token)" \
  --submit "$(field "$submit_json" token)"
