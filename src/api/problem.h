#pragma once

// What the API's store calls answer when they do not succeed, and the helpers the store's parts
// share: a Failure maps to one HTTP status (see http.cc).

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

#include "coord/coordination.h"
#include "coord/error.h"
#include "tasks/task.h"

namespace drover::api {

// Why a store call did not succeed; each maps to one HTTP status (see http.cc).
enum class Failure {
  kBadRequest,   // 400: the input itself is wrong (duplicate ids in a batch, ...)
  kNotFound,     // 404: no such task
  kConflict,     // 409: the id exists with another spec
  kTooLarge,     // 413: more than one ZooKeeper transaction can carry
  kTooMany,      // 429: past the cap on pending tasks (StoreOptions::max_pending); retry later
  kUnavailable,  // 503: no quorum, not connected, or the outcome could not be learned in time
  kInternal,     // 500: the tree holds something this version cannot read, or a broken invariant
};

struct Problem {
  Failure failure = Failure::kInternal;
  std::string detail;
};

template <class T>
using StoreResult = tl::expected<T, Problem>;

inline tl::unexpected<Problem> problem(Failure failure, std::string detail) {
  return tl::unexpected(Problem{failure, std::move(detail)});
}

// What a coordination error means for a client of the API; `what` names the call.
Problem fromCoord(const coord::Error& error, std::string_view what);

// A status record, or nullopt when it cannot be decoded.
std::optional<tasks::TaskStatus> decodeStatus(const std::string& data);

// The future's result, or a timeout error (outcome unknown) after `timeout`.
template <class T>
coord::Result<T> awaitFor(const coord::Future<T>& future, std::chrono::milliseconds timeout) {
  auto r = future.waitFor(timeout);
  if (!r) return coord::fail(coord::Code::kOperationTimeout, "no reply in time");
  return *r;
}

}  // namespace drover::api
