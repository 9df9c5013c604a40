# The README's two commands: `make up` (install, build, start a local cluster) and `make test`
# (install, build, run every test). Everything else here is a convenience around CMake.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build test unit integration up asan tsan format format-check layering check tidy clean

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Unit tests first (seconds), then integration tests against real ZooKeeper servers.
test: build
	@cd $(BUILD) && ctest -L unit -j $(JOBS) --output-on-failure --timeout 120
	@cd $(BUILD) && ctest -L integration --output-on-failure --timeout 300

unit: build
	@cd $(BUILD) && ctest -L unit -j $(JOBS) --output-on-failure

integration: build
	@cd $(BUILD) && ctest -L integration --output-on-failure --timeout 300

# Builds only the `drover` binary (not the test suites or the benchmark), then runs the cluster;
# `drover up` prints the folder where it keeps the nodes' logs (kept after Ctrl-C). UP_ARGS passes
# flags on, e.g. `make up UP_ARGS="--nodes 1 --http-port 9000"`.
UP_ARGS ?=
up: configure
	@cmake --build $(BUILD) --target drover -j $(JOBS)
	@$(BUILD)/src/app/drover up $(UP_ARGS)

asan:
	@$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DDROVER_SANITIZE=address -DCMAKE_BUILD_TYPE=Debug"

tsan:
	@$(MAKE) test BUILD=build-tsan CMAKE_FLAGS="-DDROVER_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug"

format:
	@git ls-files '*.h' '*.cc' | xargs clang-format -i

# The house rules CI enforces beside the tests: every C++ file as clang-format writes it, and the
# dependency rule of docs/ARCHITECTURE.md (scripts/check_layering.py).
format-check: deps
	@git ls-files '*.h' '*.cc' | xargs clang-format --dry-run --Werror
	@echo "format: ok"

layering:
	@python3 scripts/check_layering.py .

check: format-check layering

tidy: configure
	@git ls-files 'src/*.cc' | xargs clang-tidy -p $(BUILD) --quiet

clean:
	@rm -rf build build-asan build-tsan

# Benchmarks (docs/PERFORMANCE.md). `make bench`: a Release build of its own (build-bench/), a
# full run (~20 min on 2 cores) writing bench/results/latest.{json,md} and PNG plots, ending with
# the Celery peer (bench/celery_peer.py; Celery and Redis are bench-only packages); extra driver
# flags via BENCH_ARGS (e.g. BENCH_ARGS="--backlog-tasks 100000"). `make bench-backlog`: the
# 1,000,000-task backlog alone (~30 min), into bench/results/backlog-1m/. `make bench-smoke`:
# the short CI version (the ctests `bench_smoke` and `celery_peer_smoke`). -Wno-restrict: GCC
# 12's false positive at -O3 in std::string (GCC bug 105329), seen in src/local/process.cc.
BENCH_BUILD ?= build-bench
BENCH_ARGS ?=
.PHONY: bench bench-smoke bench-build bench-backlog

bench-build: deps
	@scripts/install-deps.sh python3-matplotlib python3-celery python3-redis redis-server
	@cmake -S . -B $(BENCH_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release \
		-DCMAKE_CXX_FLAGS=-Wno-restrict >/dev/null
	@cmake --build $(BENCH_BUILD) --target drover drover_bench delay_accuracy dag_throughput -j $(JOBS)

bench: bench-build
	@$(BENCH_BUILD)/bench/drover_bench --drover $(BENCH_BUILD)/src/app/drover \
		--celery-peer bench/celery_peer.py --out bench/results/latest.json $(BENCH_ARGS); rc=$$?; \
		/usr/bin/python3 bench/report.py bench/results/latest.json bench/results; \
		$(BENCH_BUILD)/bench/delay_accuracy --drover $(BENCH_BUILD)/src/app/drover || rc=1; \
		$(BENCH_BUILD)/bench/dag_throughput --drover $(BENCH_BUILD)/src/app/drover || rc=1; exit $$rc

bench-backlog: bench-build
	@mkdir -p bench/results/backlog-1m
	@$(BENCH_BUILD)/bench/drover_bench --drover $(BENCH_BUILD)/src/app/drover \
		--out bench/results/backlog-1m/latest.json --only backlog --backlog-tasks 1000000 \
		--zk-heap 4g --stall-seconds 600 --no-standalone $(BENCH_ARGS); rc=$$?; \
		/usr/bin/python3 bench/report.py bench/results/backlog-1m/latest.json \
		bench/results/backlog-1m; exit $$rc

bench-smoke: bench-build
	@cd $(BENCH_BUILD) && ctest -R 'bench_smoke|celery_peer_smoke' --output-on-failure

# `make package`: the Debian package (docs/OPERATIONS.md) from the `drover` binary in $(BUILD):
# install what is missing (dpkg-dev for dpkg-shlibdeps), configure, build, cpack; prints its path.
.PHONY: package
package: configure
	@cmake --build $(BUILD) --target drover -j $(JOBS)
	@cd $(BUILD) && { cpack -G DEB >cpack.log 2>&1 || { cat cpack.log; exit 1; }; }
	@ls -1t $(abspath $(BUILD))/drover_*.deb | head -n 1

# The fault suite (docs/FAULTS.md), a long run: 10 minutes of faults by default. The seed comes
# from JEPSEN_SEED, else the clock, and is printed first: rerun a failure with JEPSEN_SEED=<seed>.
# Output (history, execution log, faults, tree, node logs) in $(BUILD)/jepsen-long/.
ifeq ($(origin JEPSEN_SEED),undefined)
JEPSEN_SEED := $(shell date +%s)
endif
JEPSEN_DURATION ?= 600
JEPSEN_ARGS ?=
.PHONY: jepsen
jepsen: configure
	@cmake --build $(BUILD) -j $(JOBS) --target drover drover_jepsen
	@echo "[ jepsen ] seed $(JEPSEN_SEED) (rerun: make jepsen JEPSEN_SEED=$(JEPSEN_SEED))"
	@$(BUILD)/tests/jepsen/drover_jepsen --seed $(JEPSEN_SEED) --duration-s $(JEPSEN_DURATION) \
		--drover $(BUILD)/src/app/drover --out $(BUILD)/jepsen-long $(JEPSEN_ARGS)
