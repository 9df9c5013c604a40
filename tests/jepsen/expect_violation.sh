#!/bin/sh
# expect_violation.sh PATTERN COMMAND...: runs COMMAND (the fault suite with a planted
# violation) and passes only if it exits 1 (properties violated) and its output has PATTERN.
# Exit 0 (the plant went unnoticed) or 2 (the run itself failed) fail the test.
pattern=$1
shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 1 ]; then
  echo "expect_violation: the suite exited $rc, expected 1 (a violation found)" >&2
  exit 1
fi
if ! printf '%s\n' "$out" | grep -q -- "$pattern"; then
  echo "expect_violation: no line matches '$pattern'" >&2
  exit 1
fi
echo "expect_violation: the planted violation was named ('$pattern')"
