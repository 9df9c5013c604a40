// ZooKeeper digest authentication and ACLs against a real server (docs/SECURITY.md): the contract
// suite passes with credentials on, a client without the digest (or with another one) can neither
// read nor write the protected tree, the credentials survive a session expiry, and the node's
// startup check refuses a half-protected tree.

#include "app/zk_security.h"

#include <gtest/gtest.h>

#include "base/eventually.h"
#include "base/ids.h"
#include "coord/contract_suite.h"
#include "coord/paths.h"
#include "coord/zk/zk_coordination.h"
#include "local/zk_cluster.h"

namespace drover::coord {
namespace {

using namespace std::chrono_literals;
using local::ZkCluster;

constexpr const char* kCredential = "drover:correct-horse";

std::unique_ptr<ZkCoordination> connectAs(const std::string& credential) {
  ZkOptions o{ZkCluster::sharedStandalone().connectString(), 4000ms};
  o.digest_auth = credential;
  auto c = ZkCoordination::connect(std::move(o));
  EXPECT_TRUE(c) << c.error().toString();
  EXPECT_TRUE((*c)->waitConnected(30s));
  return std::move(*c);
}

struct DigestEnv : ContractEnv {
  std::unique_ptr<Coordination> connect() override { return connectAs(kCredential); }
};

// Every Coordination behaviour holds with credentials on and every znode creator-only.
INSTANTIATE_TEST_SUITE_P(ZooKeeperDigest, CoordinationContract,
                         ::testing::Values(ContractParam{
                             "digest", [] { return std::make_unique<DigestEnv>(); }}),
                         contractParamName);

Code codeOf(const Status& s) { return s ? Code::kOk : s.error().code(); }
template <class T>
Code codeOf(const Result<T>& r) {
  return r ? Code::kOk : r.error().code();
}

class ZkSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    owner_ = connectAs(kCredential);
    root_ = "/drover-sec-" + base::randomHex(6);
    ASSERT_TRUE(ensurePath(*owner_, root_ + "/jobs"));
    ASSERT_TRUE(
        owner_->create(CreateOp{root_ + "/jobs/t1", "secret", CreateMode::kPersistent, {}}).get());
  }
  void TearDown() override {
    if (!owner_) return;
    for (const auto& p : {root_ + "/jobs/t1", root_ + "/jobs/t2", root_ + "/jobs", root_}) {
      (void)owner_->remove(p, kAnyVersion).get();
    }
  }

  std::unique_ptr<ZkCoordination> owner_;
  std::string root_;
};

TEST_F(ZkSecurityTest, EveryZnodeGrantsAllRightsToTheDigestIdentityOnly) {
  for (const auto& p : {root_, root_ + "/jobs", root_ + "/jobs/t1"}) {
    auto acl = owner_->getAcl(p).get();
    ASSERT_TRUE(acl) << acl.error().toString();
    ASSERT_EQ(acl->size(), 1u) << p;
    EXPECT_EQ((*acl)[0].scheme, "digest");
    EXPECT_EQ((*acl)[0].id, app::digestId(kCredential));
    EXPECT_EQ((*acl)[0].perms, AclEntry::kAll);
  }
  // Creates inside a multi get the same ACL.
  auto r = owner_->multi({CreateOp{root_ + "/jobs/t2", "", CreateMode::kPersistent, {}}}).get();
  ASSERT_TRUE(r) << r.error().toString();
  auto acl = owner_->getAcl(root_ + "/jobs/t2").get();
  ASSERT_TRUE(acl);
  ASSERT_EQ(acl->size(), 1u);
  EXPECT_EQ((*acl)[0].id, app::digestId(kCredential));
}

TEST_F(ZkSecurityTest, AClientWithoutTheDigestCanNeitherReadNorWriteTheTree) {
  for (const std::string& credential : {std::string(), std::string("drover:wrong-password"),
                                        std::string("intruder:correct-horse")}) {
    SCOPED_TRACE(credential.empty() ? "no credentials" : credential);
    auto other = connectAs(credential);
    EXPECT_EQ(codeOf(other->get(root_ + "/jobs/t1", nullptr).get()), Code::kNoAuth);
    EXPECT_EQ(codeOf(other->children(root_ + "/jobs", nullptr).get()), Code::kNoAuth);
    EXPECT_EQ(codeOf(other->children(root_, nullptr).get()), Code::kNoAuth);
    EXPECT_EQ(codeOf(other->set(root_ + "/jobs/t1", "mine", kAnyVersion).get()), Code::kNoAuth);
    EXPECT_EQ(
        codeOf(
            other->create(CreateOp{root_ + "/jobs/evil", "", CreateMode::kPersistent, {}}).get()),
        Code::kNoAuth);
    EXPECT_EQ(codeOf(other->remove(root_ + "/jobs/t1", kAnyVersion).get()), Code::kNoAuth);
    EXPECT_EQ(codeOf(other->multi({SetOp{root_ + "/jobs/t1", "mine", kAnyVersion}}).get()),
              Code::kNoAuth);
  }
  // Nothing changed, and the owner still reads and writes.
  auto node = owner_->get(root_ + "/jobs/t1", nullptr).get();
  ASSERT_TRUE(node) << node.error().toString();
  EXPECT_EQ(node->data, "secret");
  EXPECT_TRUE(owner_->set(root_ + "/jobs/t1", "still mine", kAnyVersion).get());
}

TEST_F(ZkSecurityTest, CredentialsAreAddedAgainToTheSessionThatReplacesAnExpiredOne) {
  uint64_t before = owner_->session().generation;
  ASSERT_TRUE(owner_->expireSessionForTesting(20s));
  ASSERT_TRUE(base::eventually(
      [&] {
        auto s = owner_->session();
        return s.generation > before && s.state == SessionState::kConnected;
      },
      30s));
  // The new session reads the old one's protected znodes and creates creator-only ones.
  auto node = owner_->get(root_ + "/jobs/t1", nullptr).get();
  ASSERT_TRUE(node) << node.error().toString();
  EXPECT_EQ(node->data, "secret");
  ASSERT_TRUE(owner_->create(CreateOp{root_ + "/jobs/t2", "", CreateMode::kPersistent, {}}).get());
  auto acl = owner_->getAcl(root_ + "/jobs/t2").get();
  ASSERT_TRUE(acl);
  ASSERT_EQ(acl->size(), 1u);
  EXPECT_EQ((*acl)[0].id, app::digestId(kCredential));
}

TEST_F(ZkSecurityTest, StartupCheckRefusesAHalfProtectedTree) {
  std::vector<std::string> paths = {root_, root_ + "/jobs"};
  EXPECT_EQ(app::checkTreeAcl(*owner_, paths, kCredential), "");
  // Protected, opened by a node without credentials.
  auto open_node = connectAs("");
  auto refused = app::checkTreeAcl(*open_node, paths, "");
  EXPECT_NE(refused.find("protected by ZooKeeper ACLs"), std::string::npos) << refused;
  // Protected for another identity.
  auto other = connectAs("someone:else");
  refused = app::checkTreeAcl(*other, paths, "someone:else");
  EXPECT_NE(refused.find("protected for another identity"), std::string::npos) << refused;
  // An open tree (made without credentials), opened with credentials.
  std::string open_root = "/drover-open-" + base::randomHex(6);
  ASSERT_TRUE(ensurePath(*open_node, open_root + "/jobs"));
  auto with_auth = connectAs(kCredential);
  refused = app::checkTreeAcl(*with_auth, {open_root, open_root + "/jobs"}, kCredential);
  EXPECT_NE(refused.find("open to all clients"), std::string::npos) << refused;
  EXPECT_EQ(refused.find("correct-horse"), std::string::npos) << refused;  // no password shown
  EXPECT_EQ(app::checkTreeAcl(*open_node, {open_root, open_root + "/jobs"}, ""), "");
  (void)open_node->remove(open_root + "/jobs", kAnyVersion).get();
  (void)open_node->remove(open_root, kAnyVersion).get();
}

TEST(DigestId, MatchesZooKeepersOwnForm) {
  // ZooKeeper's DigestAuthenticationProvider: user:base64(sha1("user:password")).
  EXPECT_EQ(app::digestId("super:secret"), "super:lK75jTNcA+U9vtVEw5vB51mj/w4=");
}

}  // namespace
}  // namespace drover::coord
