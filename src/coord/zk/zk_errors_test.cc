#include "coord/zk/zk_errors.h"

#include <gtest/gtest.h>
#include <zookeeper/zookeeper.h>

namespace drover::coord {
namespace {

// Every return code of the C client maps to the class callers act on: retryable and
// outcome-unknown for lost replies, session loss for expiry, and each version/existence error
// to its own code.
TEST(ZkErrors, EveryClientCodeMapsToItsClass) {
  struct Case {
    int rc;
    Code code;
  };
  for (const Case& c : std::vector<Case>{
           {ZOK, Code::kOk},
           {ZNONODE, Code::kNoNode},
           {ZNODEEXISTS, Code::kNodeExists},
           {ZBADVERSION, Code::kBadVersion},
           {ZNOTEMPTY, Code::kNotEmpty},
           {ZNOCHILDRENFOREPHEMERALS, Code::kNoChildrenForEphemerals},
           {ZCONNECTIONLOSS, Code::kConnectionLoss},
           {ZOPERATIONTIMEOUT, Code::kOperationTimeout},
           {ZSESSIONEXPIRED, Code::kSessionExpired},
           {ZINVALIDSTATE, Code::kSessionExpired},
           {-12, Code::kSessionExpired},  // the server's "unknown session"
           {ZSESSIONMOVED, Code::kSessionMoved},
           {ZNOAUTH, Code::kNoAuth},
           {ZAUTHFAILED, Code::kAuthFailed},
           {ZINVALIDACL, Code::kInvalidAcl},
           {ZBADARGUMENTS, Code::kBadArguments},
           {ZCLOSING, Code::kClosing},
           {ZMARSHALLINGERROR, Code::kMarshallingError},
           {ZRUNTIMEINCONSISTENCY, Code::kRuntimeInconsistency},
           {ZUNIMPLEMENTED, Code::kUnimplemented},
           {ZSYSTEMERROR, Code::kSystemError},
           {ZDATAINCONSISTENCY, Code::kSystemError},
           {ZNEWCONFIGNOQUORUM, Code::kSystemError},
           {ZTHROTTLEDOP, Code::kSystemError},
           {12345, Code::kSystemError},
       }) {
    EXPECT_EQ(toCode(c.rc), c.code) << "rc " << c.rc;
  }
  EXPECT_TRUE(Error(toCode(ZCONNECTIONLOSS)).outcomeUnknown());
  EXPECT_TRUE(Error(toCode(ZOPERATIONTIMEOUT)).retryable());
  EXPECT_TRUE(Error(toCode(ZINVALIDSTATE)).sessionLost());
  EXPECT_FALSE(Error(toCode(ZNONODE)).retryable());
}

}  // namespace
}  // namespace drover::coord
