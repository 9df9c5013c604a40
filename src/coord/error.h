#pragma once

#include <string>
#include <string_view>
#include <tl/expected.hpp>

namespace drover::coord {

// The outcome classes of a coordination call, named after ZooKeeper's but owned by us, so
// nothing above src/coord/zk/ sees the C client's codes.
enum class Code {
  kOk,
  kNoNode,      // the node (or, for create, its parent) does not exist
  kNodeExists,  // create of a path that exists
  kBadVersion,  // a versioned set/delete/check did not match
  kNotEmpty,    // delete of a node that has children
  kNoChildrenForEphemerals,
  kConnectionLoss,    // the reply was lost: a write may or may not have been applied
  kOperationTimeout,  // no reply in time: a write may or may not have been applied
  kSessionExpired,    // terminal for the session: its ephemerals and watches are gone
  kSessionMoved,
  kNoAuth,  // an ACL refused the operation
  kAuthFailed,
  kInvalidAcl,
  kBadArguments,  // a bad path, a value over the packet limit, ... (rejected locally)
  kClosing,       // the handle is closing or closed
  kMarshallingError,
  kRuntimeInconsistency,
  kUnimplemented,
  kSystemError,  // anything else the client library reported
};

std::string_view codeName(Code code);

// An error from the coordination layer: a code plus a human-readable detail (path, op index).
class Error {
 public:
  Error() = default;
  Error(Code code, std::string detail = {}, int failed_op = -1)
      : code_(code), detail_(std::move(detail)), failed_op_(failed_op) {}

  Code code() const { return code_; }
  const std::string& detail() const { return detail_; }
  // For a failed multi: the index of the op that failed; -1 when the failure was not one op's
  // (connection loss, closing, session expired).
  int failedOp() const { return failed_op_; }

  // Worth trying again on the same session after a backoff: the connection may come back.
  bool retryable() const {
    return code_ == Code::kConnectionLoss || code_ == Code::kOperationTimeout;
  }
  // A write that failed this way may have been applied: re-read before deciding what happened.
  bool outcomeUnknown() const {
    return code_ == Code::kConnectionLoss || code_ == Code::kOperationTimeout;
  }
  // The session is gone: drop whatever it held (ephemerals, leadership) and start anew.
  bool sessionLost() const { return code_ == Code::kSessionExpired || code_ == Code::kAuthFailed; }

  std::string toString() const;
  bool operator==(const Error& other) const { return code_ == other.code_; }

 private:
  Code code_ = Code::kSystemError;
  std::string detail_;
  int failed_op_ = -1;
};

template <class T>
using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> fail(Code code, std::string detail = {}) {
  return tl::unexpected<Error>(Error(code, std::move(detail)));
}

}  // namespace drover::coord
