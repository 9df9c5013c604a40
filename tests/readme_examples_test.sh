#!/usr/bin/env bash
# Runs the README's "the same task three ways" block (CLI, curl, Python) as a user would, from a
# folder laid out like a checkout (build/src/app/drover, clients/python), against a real node
# (`drover up --nodes 1` on a free port, which replaces 8080 in the block). Each command must
# succeed and the three tasks must print hello. Ends only the `drover up` it started, by PID.
# Usage: readme_examples_test.sh PATH/TO/drover SOURCE_DIR
set -euo pipefail

drover=$(realpath "${1:?usage: readme_examples_test.sh PATH/TO/drover SOURCE_DIR}")
src=$(realpath "${2:?usage: readme_examples_test.sh PATH/TO/drover SOURCE_DIR}")
work=$(mktemp -d /tmp/drover-readme-test-XXXXXX)
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

# The block after the marker line, up to its closing fence.
block=$(awk '/readme_examples_test runs this block/ {found = 1; next}
             found && /^```sh$/ {inside = 1; next}
             inside && /^```$/ {exit}
             inside {print}' "$src/README.md")
[[ -n "$block" ]] || { echo "FAIL: no example block after the marker in README.md"; exit 1; }

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/build/src/app" "$work/clients"
ln -s "$drover" "$work/build/src/app/drover"
cp -r "$src/clients/python" "$work/clients/python"
"$drover" up --nodes 1 --http-port "$port" >"$work/up.log" 2>&1 &
up_pid=$!
deadline=$((SECONDS + 90))
until grep -q "Drover is up" "$work/up.log"; do
  if ((SECONDS >= deadline)) || ! kill -0 "$up_pid" 2>/dev/null; then
    echo "FAIL: the node did not come up"; cat "$work/up.log"; exit 1
  fi
  sleep 0.2
done

script="${block//8080/$port}"
printf '%s\n' "$script" >"$work/example.sh"
echo "--- the README's block, port $port:"; cat "$work/example.sh"
cd "$work"
# /usr/bin first: the block's python3 is Debian's (its setuptools makes the install offline).
if ! PATH="/usr/bin:$PATH" DROVER_SERVER="http://127.0.0.1:$port" bash -euo pipefail example.sh \
  >"$work/out" 2>&1; then
  echo "FAIL: the block failed:"; cat "$work/out"; exit 1
fi
cat "$work/out"
hellos=$(grep -c 'hello' "$work/out" || true)
# The CLI's result, curl's long poll and Python's result each carry "hello\n" in stdout.
((hellos >= 3)) || { echo "FAIL: $hellos lines with hello, want 3 or more"; exit 1; }
for id in hello-1 hello-2 hello-3; do
  state=$(curl -fsS "http://127.0.0.1:$port/v1/tasks/$id" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [[ "$state" == succeeded ]] || { echo "FAIL: $id is $state"; exit 1; }
done
echo PASS
