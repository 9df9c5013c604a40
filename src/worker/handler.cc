#include "worker/handler.h"

#include <exception>

namespace drover::worker {

std::string_view cancelReasonName(CancelReason reason) {
  switch (reason) {
    case CancelReason::kNone:
      return "none";
    case CancelReason::kCancelled:
      return "cancelled";
    case CancelReason::kTimedOut:
      return "timed out";
    case CancelReason::kShutdown:
      return "shutdown";
  }
  return "unknown";
}

CancelToken::CancelToken() : state_(std::make_shared<State>()) {}

CancelReason CancelToken::reason() const {
  std::lock_guard lock(state_->mu);
  return state_->reason;
}

bool CancelToken::cancel(CancelReason reason) const {
  if (reason == CancelReason::kNone) return false;
  {
    std::lock_guard lock(state_->mu);
    if (state_->reason != CancelReason::kNone) return false;
    state_->reason = reason;
  }
  state_->cv.notify_all();
  return true;
}

bool CancelToken::waitFor(base::Duration d) const {
  std::unique_lock lock(state_->mu);
  return state_->cv.wait_for(lock, d, [&] { return state_->reason != CancelReason::kNone; });
}

HandlerResult HandlerResult::failure(std::string error, Json detail) {
  if (error.empty()) error = "failed";
  return {false, std::move(detail), std::move(error)};
}

HandlerResult invokeHandler(const Handler& handler, TaskContext& ctx) noexcept {
  try {
    if (!handler) return HandlerResult::failure("no handler");
    HandlerResult r = handler(ctx);
    if (!r.ok && r.error.empty()) r.error = "failed";
    return r;
  } catch (const std::exception& e) {
    return HandlerResult::failure(std::string("handler threw: ") + e.what());
  } catch (...) {
    return HandlerResult::failure("handler threw an unknown exception");
  }
}

void HandlerRegistry::add(std::string type, Handler handler, tasks::PayloadValidator validate) {
  std::unique_lock lock(mu_);
  handlers_[std::move(type)] = Entry{std::move(handler), std::move(validate)};
}

Handler HandlerRegistry::find(std::string_view type) const {
  std::shared_lock lock(mu_);
  auto it = handlers_.find(type);
  return it == handlers_.end() ? Handler() : it->second.handler;
}

bool HandlerRegistry::has(std::string_view type) const {
  std::shared_lock lock(mu_);
  return handlers_.find(type) != handlers_.end();
}

std::optional<tasks::ValidationError> HandlerRegistry::validate(std::string_view type,
                                                                const Json& payload) const {
  tasks::PayloadValidator validator;
  {
    std::shared_lock lock(mu_);
    auto it = handlers_.find(type);
    if (it == handlers_.end() || !it->second.validate) return std::nullopt;
    validator = it->second.validate;
  }
  try {
    return validator(payload);
  } catch (const std::exception& e) {
    return tasks::ValidationError{"payload", std::string("refused by the validator: ") + e.what()};
  } catch (...) {
    return tasks::ValidationError{"payload", "refused by the validator"};
  }
}

std::vector<std::string> HandlerRegistry::types() const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  for (const auto& [type, handler] : handlers_) out.push_back(type);
  return out;
}

}  // namespace drover::worker
