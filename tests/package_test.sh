#!/usr/bin/env bash
# The Debian package end to end, as an operator gets it: cpack builds the .deb from BUILD_DIR,
# dpkg installs it, the INSTALLED /usr/bin/drover runs a node (as the package's `drover` user,
# with the packaged /etc/drover/drover.yaml) against a ZooKeeper server started here, the
# installed CLI submits a task and waits for it, SIGTERM stops the node gracefully, and
# `dpkg --purge` removes the package. Needs root (dpkg -i); systemd need not be running.
#
# Usage: tests/package_test.sh BUILD_DIR
# Everything it starts (ZooKeeper, the node) is stopped by PID on exit; the package and the
# `drover` user are removed again if they were not there before. DROVER_KEEP_TEST_DIRS=1 keeps
# the temporary folder (ZooKeeper and node logs) for a post-mortem.
set -euo pipefail

build_dir=${1:?usage: package_test.sh BUILD_DIR}
build_dir=$(cd "$build_dir" && pwd)

fail() {
  echo "package_test: FAIL: $*" >&2
  exit 1
}
step() { echo "package_test: $*"; }

if [[ $(id -u) -ne 0 ]]; then
  fail "must run as root: it installs the .deb with dpkg -i and removes it again (CI runs as root)"
fi
if [[ "$(dpkg-query -W -f='${Status}' drover 2>/dev/null || true)" == *installed* ]]; then
  fail "a drover package is already installed here; this test would replace and remove it." \
    "Remove it first (dpkg --purge drover)"
fi
[[ -f "$build_dir/CPackConfig.cmake" ]] || fail "$build_dir/CPackConfig.cmake missing: configure first"

work=$(mktemp -d /tmp/drover-package-test.XXXXXX)
zk_pid=""
node_pid=""
installed=0
had_user=0
getent passwd drover >/dev/null && had_user=1
had_group=0
getent group drover >/dev/null && had_group=1

# Ends a process this script started: SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
  local pid=$1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  stop_pid "$node_pid"
  stop_pid "$zk_pid"
  if [[ $installed -eq 1 ]]; then
    dpkg --purge drover >/dev/null 2>&1 || echo "package_test: warning: dpkg --purge drover failed" >&2
  fi
  if [[ $had_user -eq 0 ]] && getent passwd drover >/dev/null; then
    userdel drover 2>/dev/null || true
  fi
  if [[ $had_group -eq 0 ]] && getent group drover >/dev/null; then
    groupdel drover 2>/dev/null || true
  fi
  if [[ $rc -ne 0 ]]; then
    for log in "$work/zk.log" "$work/node.log"; do
      [[ -f "$log" ]] && { echo "--- last lines of $log" >&2; tail -n 40 "$log" >&2; }
    done
  fi
  if [[ "${DROVER_KEEP_TEST_DIRS:-}" == 1 ]]; then
    echo "package_test: kept $work" >&2
  else
    rm -rf "$work"
  fi
  exit $rc
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS < deadline)) || fail "$what: not within ${seconds}s"
    sleep 0.2
  done
}

# --- Build the package (the `drover` binary is already built by the test run's build).
step "cpack in $build_dir"
cmake --build "$build_dir" --target drover >/dev/null
(cd "$build_dir" && cpack -G DEB -B "$work/pkg" >"$work/cpack.log" 2>&1) \
  || { cat "$work/cpack.log" >&2; fail "cpack -G DEB failed"; }
debs=("$work"/pkg/drover_*.deb)
[[ -f "${debs[0]}" ]] || fail "cpack made no drover_*.deb"
deb=${debs[0]}
step "built $(basename "$deb") ($(stat -c %s "$deb") bytes)"

[[ "$(dpkg-deb -f "$deb" Package)" == drover ]] || fail "package name is not drover"
depends=$(dpkg-deb -f "$deb" Depends)
step "Depends: $depends"
for lib in libzookeeper-mt2 libspdlog libfmt libyaml-cpp libcpp-httplib adduser; do
  [[ "$depends" == *"$lib"* ]] || fail "Depends lacks $lib (dpkg-shlibdeps did not run?)"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -x -O ./conffiles 2>/dev/null | grep -qx /etc/drover/drover.yaml \
  || fail "/etc/drover/drover.yaml is not a conffile"

# --- Install it; the dependencies only if dpkg says some are missing.
step "dpkg -i"
installed=1
if ! dpkg -i "$deb" >"$work/dpkg.log" 2>&1; then
  grep -q "dependency problems" "$work/dpkg.log" || { cat "$work/dpkg.log" >&2; fail "dpkg -i failed"; }
  step "installing missing dependencies (apt-get -f install)"
  DEBIAN_FRONTEND=noninteractive apt-get -f install -y -qq >>"$work/dpkg.log" 2>&1 \
    || { cat "$work/dpkg.log" >&2; fail "apt-get -f install failed"; }
fi
[[ "$(dpkg-query -W -f='${Status}' drover)" == "install ok installed" ]] \
  || fail "drover is not installed after dpkg -i"

listing=$(dpkg -L drover)
for f in /usr/bin/drover /lib/systemd/system/drover.service /etc/drover/drover.yaml; do
  grep -qx "$f" <<<"$listing" || fail "dpkg -L drover does not list $f"
  [[ -e "$f" ]] || fail "$f is listed but missing"
done
[[ -x /usr/bin/drover ]] || fail "/usr/bin/drover is not executable"

# The postinst made a system user and made the config readable by it only.
uid=$(id -u drover 2>/dev/null) || fail "postinst did not create the drover user"
((uid < 1000)) || fail "drover's uid $uid is not a system uid"
[[ "$(stat -c '%U:%G %a' /etc/drover/drover.yaml)" == "root:drover 640" ]] \
  || fail "/etc/drover/drover.yaml is $(stat -c '%U:%G %a' /etc/drover/drover.yaml), want root:drover 640"

# The postinst is idempotent: configure again (as dpkg-reconfigure would) and reinstall.
/var/lib/dpkg/info/drover.postinst configure "$(dpkg-query -W -f='${Version}' drover)" \
  || fail "postinst configure failed on its second run"
dpkg -i "$deb" >"$work/dpkg2.log" 2>&1 || { cat "$work/dpkg2.log" >&2; fail "reinstall failed"; }
[[ "$(id -u drover)" == "$uid" ]] || fail "reinstall changed the drover user"

if command -v systemd-analyze >/dev/null; then
  step "systemd-analyze verify drover.service"
  systemd-analyze verify /lib/systemd/system/drover.service >"$work/verify.log" 2>&1 \
    || { cat "$work/verify.log" >&2; fail "systemd-analyze verify found problems in the unit"; }
  [[ ! -s "$work/verify.log" ]] || { cat "$work/verify.log" >&2; fail "systemd-analyze verify warned"; }
fi
grep -qx 'ExecStart=/usr/bin/drover node --config /etc/drover/drover.yaml' \
  /lib/systemd/system/drover.service || fail "the unit does not run drover node --config"

# --- A standalone ZooKeeper server from Debian's zookeeper package, on a free loopback port.
zk_port=$(free_port)
mkdir -p "$work/zk"
cat >"$work/zoo.cfg" <<EOF
tickTime=2000
dataDir=$work/zk
clientPort=$zk_port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
EOF
step "ZooKeeper on 127.0.0.1:$zk_port"
java -Xmx256m -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
  org.apache.zookeeper.server.ZooKeeperServerMain "$work/zoo.cfg" >"$work/zk.log" 2>&1 &
zk_pid=$!

zk_standalone() {
  kill -0 "$zk_pid" 2>/dev/null || fail "ZooKeeper exited"
  local reply
  reply=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf srvr >&3 && cat <&3' \
    _ "$zk_port" 2>/dev/null) || return 1
  grep -q "Mode: standalone" <<<"$reply"
}
wait_for 60 "ZooKeeper answering srvr with Mode: standalone" zk_standalone

# --- The installed binary, as the service runs it: user drover, the packaged config file (the
# flags only point it at this test's ZooKeeper and a free port; flags override the file).
http_port=$(free_port)
server="http://127.0.0.1:$http_port"
step "installed drover node on $server"
(cd / && exec setpriv --reuid=drover --regid=drover --init-groups \
  /usr/bin/drover node --config /etc/drover/drover.yaml \
  --zk "127.0.0.1:$zk_port" --http "127.0.0.1:$http_port") >"$work/node.log" 2>&1 &
node_pid=$!

node_leads() {
  kill -0 "$node_pid" 2>/dev/null || fail "the installed drover node exited; its log is below"
  local cluster
  cluster=$(/usr/bin/drover cluster --server "$server" --json 2>/dev/null) || return 1
  python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1]).get("leader") else 1)' "$cluster"
}
wait_for 60 "the node serving its API and leading" node_leads
[[ "$(ps -o user= -p "$node_pid")" == drover ]] || fail "the node does not run as drover"

step "drover submit --wait -- echo packaged"
out=$(timeout 60 /usr/bin/drover submit --server "$server" --json --wait -- echo packaged) \
  || fail "drover submit --wait exited $? (output: $out)"
python3 - "$out" <<'EOF' || fail "the task did not succeed with stdout 'packaged': $out"
import json, sys
task = json.loads(sys.argv[1].strip().splitlines()[-1])
assert task["state"] == "succeeded", task
assert task["result"]["stdout"] == "packaged\n", task
EOF
step "task succeeded: $out"

# --- A graceful stop, as systemctl stop does (KillSignal=SIGTERM): the node exits 0, well
# within the unit's TimeoutStopSec.
step "SIGTERM to the node"
kill -TERM "$node_pid"
stop_deadline=$((SECONDS + 20))
while kill -0 "$node_pid" 2>/dev/null; do
  ((SECONDS < stop_deadline)) || fail "the node did not exit within 20s of SIGTERM"
  sleep 0.1
done
node_rc=0
wait "$node_pid" || node_rc=$?
node_pid=""
[[ $node_rc -eq 0 ]] || fail "the node exited $node_rc after SIGTERM, want 0"

stop_pid "$zk_pid"
zk_pid=""

# --- Remove it again and check that it is gone.
step "dpkg --purge drover"
dpkg --purge drover >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "dpkg --purge failed"; }
installed=0
[[ ! -e /usr/bin/drover && ! -e /lib/systemd/system/drover.service && ! -e /etc/drover ]] \
  || fail "files left behind after dpkg --purge"
step "PASS"
