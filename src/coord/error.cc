#include "coord/error.h"

namespace drover::coord {

std::string_view codeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kNoNode:
      return "no node";
    case Code::kNodeExists:
      return "node exists";
    case Code::kBadVersion:
      return "bad version";
    case Code::kNotEmpty:
      return "not empty";
    case Code::kNoChildrenForEphemerals:
      return "no children for ephemerals";
    case Code::kConnectionLoss:
      return "connection loss";
    case Code::kOperationTimeout:
      return "operation timeout";
    case Code::kSessionExpired:
      return "session expired";
    case Code::kSessionMoved:
      return "session moved";
    case Code::kNoAuth:
      return "not authorised";
    case Code::kAuthFailed:
      return "authentication failed";
    case Code::kInvalidAcl:
      return "invalid acl";
    case Code::kBadArguments:
      return "bad arguments";
    case Code::kClosing:
      return "closing";
    case Code::kMarshallingError:
      return "marshalling error";
    case Code::kRuntimeInconsistency:
      return "runtime inconsistency";
    case Code::kUnimplemented:
      return "unimplemented";
    case Code::kSystemError:
      return "system error";
  }
  return "unknown";
}

std::string Error::toString() const {
  std::string out(codeName(code_));
  if (!detail_.empty()) {
    out += ": ";
    out += detail_;
  }
  return out;
}

}  // namespace drover::coord
