#include "coord/zk/zk_errors.h"

#include <zookeeper/zookeeper.h>

namespace drover::coord {
namespace {
// The server's "unknown session" (its own code, absent from the C client's header): an answer to
// a request of a session the server has already closed, seen on multis sent while a session
// expires. It means the session is gone, as ZSESSIONEXPIRED does.
constexpr int kUnknownSession = -12;
}  // namespace

Code toCode(int rc) {
  switch (rc) {
    case ZOK:
      return Code::kOk;
    case ZNONODE:
      return Code::kNoNode;
    case ZNODEEXISTS:
      return Code::kNodeExists;
    case ZBADVERSION:
      return Code::kBadVersion;
    case ZNOTEMPTY:
      return Code::kNotEmpty;
    case ZNOCHILDRENFOREPHEMERALS:
      return Code::kNoChildrenForEphemerals;
    case ZCONNECTIONLOSS:
      return Code::kConnectionLoss;
    case ZOPERATIONTIMEOUT:
      return Code::kOperationTimeout;
    case ZSESSIONEXPIRED:
      return Code::kSessionExpired;
    // The handle is expired or auth-failed: the client refuses to send anything on it.
    case ZINVALIDSTATE:
      return Code::kSessionExpired;
    case kUnknownSession:
      return Code::kSessionExpired;
    case ZSESSIONMOVED:
      return Code::kSessionMoved;
    case ZNOAUTH:
      return Code::kNoAuth;
    case ZAUTHFAILED:
      return Code::kAuthFailed;
    case ZINVALIDACL:
      return Code::kInvalidAcl;
    case ZBADARGUMENTS:
      return Code::kBadArguments;
    case ZCLOSING:
      return Code::kClosing;
    case ZMARSHALLINGERROR:
      return Code::kMarshallingError;
    case ZRUNTIMEINCONSISTENCY:
      return Code::kRuntimeInconsistency;
    case ZUNIMPLEMENTED:
      return Code::kUnimplemented;
    default:
      return Code::kSystemError;
  }
}

}  // namespace drover::coord
