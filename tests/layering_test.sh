#!/usr/bin/env bash
# The layering check (scripts/check_layering.py) passes on the tree, and catches each kind of
# violation when one is planted in a copy of it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
check="$root/scripts/check_layering.py"
python3 "$check" "$root"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
expect_violation() {  # name, then the planting command run inside a fresh copy
  local name=$1; shift
  rm -rf "$tmp/tree" && mkdir -p "$tmp/tree"
  cp -r "$root/src" "$tmp/tree/src"
  mkdir -p "$tmp/tree/tests" "$tmp/tree/bench"
  (cd "$tmp/tree" && eval "$*")
  if python3 "$check" "$tmp/tree" >"$tmp/out" 2>&1; then
    echo "FAIL: planted violation '$name' was not caught"; cat "$tmp/out"; exit 1
  fi
  echo "caught $name: $(head -n 1 "$tmp/out")"
}
expect_violation "include from above" \
  "echo '#include \"api/batch_store.h\"' >> src/base/clock.h"
expect_violation "scheduler includes worker" \
  "echo '#include \"worker/agent.h\"' >> src/scheduler/strategy.h"
expect_violation "ZooKeeper header outside coord/zk" \
  "echo '#include <zookeeper/zookeeper.h>' >> src/recipes/election.cc"
expect_violation "link to a layer above" \
  "sed -i 's/target_link_libraries(drover_tasks PUBLIC/target_link_libraries(drover_tasks PUBLIC drover_worker/' src/tasks/CMakeLists.txt"
expect_violation "include without a link" \
  "sed -i 's/target_link_libraries(drover_worker PUBLIC drover_tasks drover_coord drover_base)/target_link_libraries(drover_worker PUBLIC drover_base)/' src/worker/CMakeLists.txt"
echo "layering_test: ok"
