#include "tasks/payloads.h"

#include <fmt/format.h>

#include <algorithm>

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

// Reads an env object (exec and container): names non-empty without '=' or NUL, string values
// without NUL.
tl::expected<void, ValidationError> parseEnv(const Json& value,
                                             std::map<std::string, std::string>& out) {
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
    out[name] = std::move(s);
  }
  return {};
}

tl::expected<void, ValidationError> parseArgv(const Json& value, std::vector<std::string>& out) {
  if (!value.is_array()) return invalid("payload.argv", "must be an array of strings");
  for (size_t i = 0; i < value.size(); ++i) {
    const Json& arg = value[i];
    std::string field = fmt::format("payload.argv[{}]", i);
    if (!arg.is_string()) return invalid(field, "must be a string");
    out.push_back(arg.get<std::string>());
    if (hasNul(out.back())) return invalid(field, "must not hold a NUL byte");
  }
  return {};
}

}  // namespace

tl::expected<Resources, ValidationError> parseResources(const Json& value) {
  if (!value.is_object()) {
    return invalid("payload.resources", "must be an object {\"memory_mb\", \"cpus\", \"pids\"}");
  }
  Resources r;
  const auto whole = [](const Json& v, int64_t lo, int64_t hi, int64_t& out) {
    if (!v.is_number_integer() && !v.is_number_unsigned()) return false;
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) return false;
    int64_t n = v.get<int64_t>();
    if (n < lo || n > hi) return false;
    out = n;
    return true;
  };
  for (const auto& [key, v] : value.items()) {
    if (key == "memory_mb") {
      if (!whole(v, 4, kMaxMemoryMb, r.memory_mb)) {
        return invalid("payload.resources.memory_mb",
                       fmt::format("must be a whole number of MiB from 4 to {}", kMaxMemoryMb));
      }
    } else if (key == "cpus") {
      if (!v.is_number() || !(v.get<double>() > 0) || v.get<double>() > 1024) {
        return invalid("payload.resources.cpus", "must be a number above 0, at most 1024");
      }
      r.cpus = v.get<double>();
    } else if (key == "pids") {
      if (!whole(v, 1, kMaxPids, r.pids)) {
        return invalid("payload.resources.pids",
                       fmt::format("must be a whole number from 1 to {}", kMaxPids));
      }
    } else {
      return invalid(fmt::format("payload.resources.{}", cut(key)), "unknown field");
    }
  }
  return r;
}

tl::expected<ContainerRequest, ValidationError> parseContainerPayload(const Json& payload) {
  if (!payload.is_object()) {
    return invalid("payload", "must be an object {\"image\": \"...\", \"argv\": [...], ...}");
  }
  ContainerRequest req;
  bool has_image = false;
  for (const auto& [key, value] : payload.items()) {
    if (key == "image") {
      if (!value.is_string()) return invalid("payload.image", "must be a string");
      req.image = value.get<std::string>();
      has_image = true;
      bool bad_char = std::any_of(req.image.begin(), req.image.end(), [](char c) {
        return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
      });
      if (req.image.empty() || req.image.size() > 512 || bad_char || req.image[0] == '-') {
        return invalid("payload.image",
                       "must be an image reference: 1-512 characters, no spaces or control "
                       "characters, not starting with '-'");
      }
    } else if (key == "argv") {
      if (auto r = parseArgv(value, req.argv); !r) return tl::unexpected(r.error());
    } else if (key == "env") {
      if (auto r = parseEnv(value, req.env); !r) return tl::unexpected(r.error());
    } else if (key == "network") {
      if (!value.is_boolean()) return invalid("payload.network", "must be true or false");
      req.network = value.get<bool>();
    } else if (key == "resources") {
      auto r = parseResources(value);
      if (!r) return tl::unexpected(r.error());
      req.resources = *r;
    } else {
      return invalid(fmt::format("payload.{}", cut(key)), "unknown field");
    }
  }
  if (!has_image) return invalid("payload.image", "is required (an image reference)");
  return req;
}

std::optional<ValidationError> validateContainerPayload(const Json& payload) {
  auto r = parseContainerPayload(payload);
  if (!r) return r.error();
  return std::nullopt;
}

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
      if (auto r = parseArgv(value, req.argv); !r) return tl::unexpected(r.error());
      if (req.argv[0].empty()) return invalid("payload.argv[0]", "must not be empty");
    } else if (key == "env") {
      if (auto r = parseEnv(value, req.env); !r) return tl::unexpected(r.error());
    } else if (key == "cwd") {
      if (!value.is_string()) return invalid("payload.cwd", "must be a string");
      req.cwd = value.get<std::string>();
      if (hasNul(req.cwd)) return invalid("payload.cwd", "must not hold a NUL byte");
    } else if (key == "stdin") {
      if (!value.is_string()) return invalid("payload.stdin", "must be a string");
      req.stdin_data = value.get<std::string>();
    } else if (key == "network") {
      if (!value.is_boolean()) return invalid("payload.network", "must be true or false");
      req.network = value.get<bool>();
    } else if (key == "resources") {
      auto r = parseResources(value);
      if (!r) return tl::unexpected(r.error());
      req.resources = *r;
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
  if (type == "container") return validateContainerPayload;
  return {};
}

}  // namespace drover::tasks
