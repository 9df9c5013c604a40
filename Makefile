# The README's two commands: `make up` (install, build, start a local cluster) and `make test`
# (install, build, run every test). Everything else here is a convenience around CMake.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build test unit integration up asan tsan format tidy clean

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

up: build
	@$(BUILD)/src/app/drover up

asan:
	@$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DDROVER_SANITIZE=address -DCMAKE_BUILD_TYPE=Debug"

tsan:
	@$(MAKE) test BUILD=build-tsan CMAKE_FLAGS="-DDROVER_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug"

format:
	@git ls-files '*.h' '*.cc' | xargs clang-format -i

tidy: configure
	@git ls-files 'src/*.cc' | xargs clang-tidy -p $(BUILD) --quiet

clean:
	@rm -rf build build-asan build-tsan
