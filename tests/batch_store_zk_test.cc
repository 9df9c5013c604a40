// BatchStore (protocol v2) against a real ZooKeeper: the suite of src/api/batch_store_suite.h,
// which the unit tests run against the fake tree.
#include "api/batch_depends_cases.h"
#include "api/batch_feed_cases.h"
#include "api/batch_http_cases.h"
#include "api/batch_read_cases.h"
#include "api/batch_retry_cases.h"
#include "api/batch_store_suite.h"
#include "coord/zk/zk_coordination.h"
#include "local/zk_cluster.h"

namespace drover::api::testing {
namespace {

struct ZkBatchEnv final : BatchEnv {
  std::unique_ptr<coord::Coordination> connect() override {
    auto c = coord::ZkCoordination::connect(
        {local::ZkCluster::sharedStandalone().connectString(), std::chrono::milliseconds(4000)});
    EXPECT_TRUE(c) << c.error().toString();
    EXPECT_TRUE((*c)->waitConnected(std::chrono::seconds(30)));
    return std::move(*c);
  }
};

INSTANTIATE_TEST_SUITE_P(ZooKeeper, BatchStoreSuite,
                         ::testing::Values(BatchParam{
                             "zk", [] { return std::make_unique<ZkBatchEnv>(); }}),
                         batchParamName);

}  // namespace
}  // namespace drover::api::testing
