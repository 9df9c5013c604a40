// BatchStore (protocol v2) against the fake tree; tests/batch_store_zk_test.cc runs the same
// suite against a real ZooKeeper.
#include "api/batch_depends_cases.h"
#include "api/batch_feed_cases.h"
#include "api/batch_http_cases.h"
#include "api/batch_read_cases.h"
#include "api/batch_retry_cases.h"
#include "api/batch_store_suite.h"
#include "coord/fake/fake_coordination.h"

namespace drover::api::testing {
namespace {

struct FakeBatchEnv final : BatchEnv {
  std::shared_ptr<coord::FakeServer> server = std::make_shared<coord::FakeServer>();
  std::unique_ptr<coord::Coordination> connect() override {
    return std::make_unique<coord::FakeCoordination>(server);
  }
};

INSTANTIATE_TEST_SUITE_P(Fake, BatchStoreSuite,
                         ::testing::Values(BatchParam{
                             "fake", [] { return std::make_unique<FakeBatchEnv>(); }}),
                         batchParamName);

}  // namespace
}  // namespace drover::api::testing
