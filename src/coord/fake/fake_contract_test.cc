// Runs the Coordination contract against the fake.

#include <memory>

#include "coord/contract_suite.h"
#include "coord/fake/fake_coordination.h"

namespace drover::coord {
namespace {

// All clients of one test share one server, like clients of one ZooKeeper ensemble.
class FakeEnv final : public ContractEnv {
 public:
  std::unique_ptr<Coordination> connect() override {
    return std::make_unique<FakeCoordination>(server_);
  }

 private:
  std::shared_ptr<FakeServer> server_ = std::make_shared<FakeServer>();
};

DROVER_INSTANTIATE_COORDINATION_CONTRACT(Fake, "fake", [] { return std::make_unique<FakeEnv>(); });

}  // namespace
}  // namespace drover::coord
