#pragma once

// The behaviour every Coordination must have, as one parameterized gtest suite. It runs against
// the fake (src/coord/fake/fake_contract_test.cc) and against a real ZooKeeper (tests/), so the
// fake cannot drift from the real thing.
//
// To run it against an implementation, link drover_coord_contract and write, in one test file:
//
//   DROVER_INSTANTIATE_COORDINATION_CONTRACT(Zk, "zk", [] { return std::make_unique<MyEnv>(); });
//
// The suite uses only the Coordination interface. Each test works under its own random base
// path (/drover-contract-<hex>) and removes it afterwards, so one server can serve every test.

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "coord/coordination.h"

namespace drover::coord {

// gtest prints codes by name. Every test file that compares Codes includes this header, so all
// of them see the same printer.
inline void PrintTo(Code code, std::ostream* os) { *os << codeName(code); }
inline void PrintTo(EventType type, std::ostream* os) {
  static constexpr const char* kNames[] = {"created", "deleted", "data changed",
                                           "children changed"};
  *os << kNames[static_cast<int>(type)];
}
inline void PrintTo(SessionState state, std::ostream* os) {
  static constexpr const char* kNames[] = {"connecting", "connected", "disconnected", "expired",
                                           "closed"};
  *os << kNames[static_cast<int>(state)];
}

// Where the clients come from. One env is made per test (SetUp) and destroyed after it.
struct ContractEnv {
  virtual ~ContractEnv();
  // A new client with its own session, already connected (session().state == kConnected).
  virtual std::unique_ptr<Coordination> connect() = 0;
};
using ContractEnvFactory = std::function<std::unique_ptr<ContractEnv>()>;

struct ContractParam {
  std::string name;  // the test-name suffix: letters, digits and '_' only
  ContractEnvFactory factory;
};

inline void PrintTo(const ContractParam& param, std::ostream* os) { *os << param.name; }

// Names the instantiated tests after ContractParam::name.
std::string contractParamName(const ::testing::TestParamInfo<ContractParam>& info);

class CoordinationContract : public ::testing::TestWithParam<ContractParam> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A path under this test's base: path("a/b") -> "/drover-contract-<hex>/a/b".
  std::string path(const std::string& relative) const;

  std::unique_ptr<ContractEnv> env_;
  std::unique_ptr<Coordination> client_;  // the client most tests use
  std::string base_;                      // created in SetUp, removed in TearDown
};

// Helpers shared by the contract and the fake's own tests.
namespace contract {

inline constexpr std::chrono::seconds kWait{10};

// The result of `future`, waiting at most kWait (a test failure and kOperationTimeout after).
template <class T>
Result<T> await(const Future<T>& future) {
  auto result = future.waitFor(kWait);
  if (!result) {
    ADD_FAILURE() << "a coordination call did not complete within " << kWait.count() << "s";
    return tl::unexpected(Error(Code::kOperationTimeout, "test deadline"));
  }
  return *result;
}

// kOk or the error code of the completed call.
template <class T>
Code codeOf(const Future<T>& future) {
  auto result = await(future);
  return result ? Code::kOk : result.error().code();
}

// The value of a call expected to succeed; a test failure (and T{}) otherwise.
template <class T>
T valueOf(const Future<T>& future) {
  auto result = await(future);
  if (!result) {
    ADD_FAILURE() << "unexpected error: " << result.error().toString();
    return T{};
  }
  return *result;
}

// Collects watch events; its watchers may outlive it (they share its state).
class WatchRecorder {
 public:
  Watcher watcher() const;
  std::vector<WatchEvent> events() const;
  size_t count() const;
  // Waits (with a deadline) until at least `n` events came.
  bool waitForCount(size_t n) const;

 private:
  struct State {
    mutable std::mutex mu;
    std::vector<WatchEvent> events;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// Collects session events from a listener, like WatchRecorder.
class SessionRecorder {
 public:
  SessionListener listener() const;
  std::vector<SessionEvent> events() const;
  std::vector<SessionState> states() const;
  // Waits (with a deadline) until an event with `state` came.
  bool waitFor(SessionState state) const;

 private:
  struct State {
    mutable std::mutex mu;
    std::vector<SessionEvent> events;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace contract
}  // namespace drover::coord

// Instantiates the suite. Use it where `CoordinationContract` names the fixture unqualified
// (inside namespace drover::coord, or after `using drover::coord::CoordinationContract;`): gtest
// pastes the suite name into identifiers.
#define DROVER_INSTANTIATE_COORDINATION_CONTRACT(prefix, name, factory)                      \
  INSTANTIATE_TEST_SUITE_P(prefix, CoordinationContract,                                     \
                           ::testing::Values(::drover::coord::ContractParam{name, factory}), \
                           ::drover::coord::contractParamName)
