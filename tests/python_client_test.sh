#!/usr/bin/env bash
# The Python client (clients/python) as a user gets it: `pip install` offline into a fresh venv,
# then its tests against a real node (`drover up --nodes 1`: ZooKeeper + one node on free
# loopback ports). Ends only the `drover up` it started (by PID), which stops its node and
# ZooKeeper.  Usage: python_client_test.sh PATH/TO/drover SOURCE_DIR
set -euo pipefail

drover=${1:?usage: python_client_test.sh PATH/TO/drover SOURCE_DIR}
src=${2:?usage: python_client_test.sh PATH/TO/drover SOURCE_DIR}
py=/usr/bin/python3  # Debian's interpreter: the one python3-setuptools belongs to

work=$(mktemp -d /tmp/drover-python-test-XXXXXX)
up_pid=""
cleanup() {
  if [[ -n "$up_pid" ]] && kill -0 "$up_pid" 2>/dev/null; then
    kill -TERM "$up_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$up_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "--- pip install (offline) into a fresh venv"
"$py" -m venv --system-site-packages "$work/venv"
# A copy: pip builds in the source tree (build/, *.egg-info), which must stay clean.
cp -r "$src/clients/python" "$work/pkg"
PIP_NO_INDEX=1 "$work/venv/bin/pip" install --quiet --no-build-isolation --no-index "$work/pkg"
installed=$("$work/venv/bin/python" -c 'import drover, os; print(os.path.dirname(drover.__file__))')
[[ "$installed" == "$work/venv/"* ]] || { echo "FAIL: drover imported from $installed"; exit 1; }
[[ -f "$installed/py.typed" ]] || { echo "FAIL: py.typed was not installed"; exit 1; }

echo "--- a node: drover up --nodes 1"
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$drover" up --nodes 1 --http-port "$port" >"$work/up.log" 2>&1 &
up_pid=$!
deadline=$((SECONDS + 90))
until grep -q "Drover is up" "$work/up.log"; do
  if ((SECONDS >= deadline)) || ! kill -0 "$up_pid" 2>/dev/null; then
    echo "FAIL: the node did not come up"; cat "$work/up.log"; exit 1
  fi
  sleep 0.2
done

echo "--- the client's tests against http://127.0.0.1:$port"
# From the work folder, so that `import drover` finds the installed package, not the sources.
cp -r "$src/clients/python/tests" "$work/tests"
cd "$work"
rc=0
DROVER_TEST_SERVER="http://127.0.0.1:$port" "$work/venv/bin/python" -m unittest discover \
  -s tests -v >"$work/unittest.log" 2>&1 || rc=$?
cat "$work/unittest.log"
# A run that skipped the live tests proves nothing about the node.
if grep -q "skipped 'DROVER_TEST_SERVER" "$work/unittest.log"; then
  echo "FAIL: the live tests were skipped"; exit 1
fi
exit "$rc"
