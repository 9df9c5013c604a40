#include "tasks/payloads.h"

#include <fmt/format.h>

namespace drover::tasks {
namespace {

tl::unexpected<ValidationError> invalid(std::string field, std::string detail) {
  return tl::unexpected(ValidationError{std::move(field), std::move(detail)});
}

std::optional<ValidationError> problem(std::string field, std::string detail) {
  return ValidationError{std::move(field), std::move(detail)};
}

bool hasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

// Names quoted in a field path are cut, so that a detail stays short whatever the client sent.
std::string cut(std::string_view s) {
  constexpr size_t kMax = 64;
  return s.size() <= kMax ? std::string(s) : std::string(s.substr(0, kMax)) + "...";
}

}  // namespace

tl::expected<ExecRequest, ValidationError> parseExecPayload(const Json& payload) {
  if (!payload.is_object()) {
    return invalid("payload", "must be an object {\"argv\": [...], ...}");
  }
  ExecRequest req;
  for (const auto& [key, value] : payload.items()) {
    if (key == "argv") {
      if (!value.is_array() || value.empty()) {
        return invalid("payload.argv", "must be a non-empty array of strings");
      }
      for (size_t i = 0; i < value.size(); ++i) {
        const Json& arg = value[i];
        std::string field = fmt::format("payload.argv[{}]", i);
        if (!arg.is_string()) return invalid(field, "must be a string");
        req.argv.push_back(arg.get<std::string>());
        if (hasNul(req.argv.back())) return invalid(field, "must not hold a NUL byte");
      }
      if (req.argv[0].empty()) return invalid("payload.argv[0]", "must not be empty");
    } else if (key == "env") {
      if (!value.is_object()) return invalid("payload.env", "must be an object of strings");
      for (const auto& [name, v] : value.items()) {
        if (name.empty() || name.find('=') != std::string::npos || hasNul(name)) {
          return invalid("payload.env",
                         fmt::format("name '{}' must be non-empty, without '=' or NUL", cut(name)));
        }
        std::string field = fmt::format("payload.env.{}", cut(name));
        if (!v.is_string()) return invalid(field, "must be a string");
        auto s = v.get<std::string>();
        if (hasNul(s)) return invalid(field, "must not hold a NUL byte");
        req.env[name] = std::move(s);
      }
    } else if (key == "cwd") {
      if (!value.is_string()) return invalid("payload.cwd", "must be a string");
      req.cwd = value.get<std::string>();
      if (hasNul(req.cwd)) return invalid("payload.cwd", "must not hold a NUL byte");
    } else if (key == "stdin") {
      if (!value.is_string()) return invalid("payload.stdin", "must be a string");
      req.stdin_data = value.get<std::string>();
    } else {
      return invalid(fmt::format("payload.{}", cut(key)), "unknown field");
    }
  }
  if (req.argv.empty()) {
    return invalid("payload.argv", "is required (a non-empty array of strings)");
  }
  return req;
}

std::optional<ValidationError> validateExecPayload(const Json& payload) {
  auto r = parseExecPayload(payload);
  if (!r) return r.error();
  return std::nullopt;
}

std::optional<ValidationError> validateSleepPayload(const Json& payload) {
  if (!payload.is_object()) return problem("payload", "must be an object {\"ms\": N}");
  for (const auto& [key, value] : payload.items()) {
    if (key != "ms") return problem(fmt::format("payload.{}", cut(key)), "unknown field");
    if (!value.is_number() || !(value.get<double>() >= 0) ||
        value.get<double>() > static_cast<double>(kMaxSleepMs)) {
      return problem("payload.ms",
                     fmt::format("must be a number of milliseconds from 0 to {}", kMaxSleepMs));
    }
  }
  return std::nullopt;
}

std::optional<ValidationError> validateFailPayload(const Json& payload) {
  if (!payload.is_object()) return problem("payload", "must be an object {\"message\": \"...\"}");
  for (const auto& [key, value] : payload.items()) {
    if (key != "message") return problem(fmt::format("payload.{}", cut(key)), "unknown field");
    if (!value.is_string()) return problem("payload.message", "must be a string");
  }
  return std::nullopt;
}

PayloadValidator builtinPayloadValidator(std::string_view type) {
  if (type == "sleep") return validateSleepPayload;
  if (type == "fail") return validateFailPayload;
  if (type == "exec") return validateExecPayload;
  return {};
}

}  // namespace drover::tasks
