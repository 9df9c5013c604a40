#!/usr/bin/env bash
# Installs Drover's build and test dependencies from Debian's packages, only when missing, so a
# repeat run costs one dpkg-query. Safe to run as root (CI, fresh machine) or with sudo available.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libzookeeper-mt-dev zookeeper default-jre-headless
  libcpp-httplib-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev
  libexpected-dev libgtest-dev libgmock-dev libbenchmark-dev
  libssl-dev openssl  # API tokens (SHA-256) and TLS; the TLS tests make their certificate with openssl
  netcat-openbsd procps curl python3 chromium dpkg-dev clang-format
  iptables  # the fault suite cuts a node off from ZooKeeper with an owner match (docs/FAULTS.md)
  prometheus  # promtool checks the /metrics format and deploy/'s alert rules (tests/metrics_test.sh)
  python3-jsonschema  # validates the OpenAPI document (tests/openapi/openapi_schema_test.py)
  libhowardhinnant-date-dev  # IANA time zones for cron schedules (src/base/cron.cc)
  python3-croniter  # the oracle cron schedules are checked against (src/base/cron_oracle_test.py)
  python3-venv python3-pip python3-setuptools  # installs clients/python offline in its test
  mypy  # type-checks clients/python (python_client_typecheck)
  # Task isolation (docs/ISOLATION.md): the exec sandbox, and the container engine with the
  # runtime that works on cgroups v1; busybox-static builds the containers' test image.
  bubblewrap podman runc busybox-static
)
# Node.js for the dashboard's browser test: Debian's nodejs and npm, unless node and npm are on PATH
# already (NodeSource's nodejs bundles npm and conflicts with Debian's npm package).
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
extra=("$@")   # callers (browser tests, benchmarks) may name more packages
packages+=("${extra[@]}")

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
