#include "api/problem.h"

#include <fmt/format.h>

namespace drover::api {

using coord::Code;

Problem fromCoord(const coord::Error& error, std::string_view what) {
  switch (error.code()) {
    case Code::kConnectionLoss:
    case Code::kOperationTimeout:
    case Code::kSessionExpired:
    case Code::kSessionMoved:
    case Code::kClosing:
      return {Failure::kUnavailable,
              fmt::format("{}: ZooKeeper is unavailable ({})", what, error.toString())};
    case Code::kBadArguments:
      return {Failure::kTooLarge,
              fmt::format("{}: rejected by ZooKeeper ({})", what, error.toString())};
    default:
      return {Failure::kInternal, fmt::format("{}: {}", what, error.toString())};
  }
}

std::optional<tasks::TaskStatus> decodeStatus(const std::string& data) {
  auto j = tasks::parseJson(data);
  if (!j) return std::nullopt;
  return tasks::statusFromJson(*j);
}

}  // namespace drover::api
