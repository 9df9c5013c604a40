#pragma once

// The payloads of the built-in task types (contract: docs/API.md "Task types") and the shape of a
// payload validator. The API checks a payload at submit with the validator registered for its
// type (400 naming the field, nothing written); the worker's handlers read the same payloads.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

#include "tasks/task.h"

namespace drover::tasks {

// Checks the payload of one task type. nullopt: fine. Else the problem, with `field` naming the
// part of the task at fault from the task's top level ("payload", "payload.argv", ...). Must be
// thread-safe and must not block: the API calls it on HTTP threads for every submitted task.
using PayloadValidator = std::function<std::optional<ValidationError>(const Json& payload)>;

// The largest `ms` of a `sleep` task: one day.
inline constexpr int64_t kMaxSleepMs = 86'400'000;

// The limits a task asks for in its payload's `resources` object (exec and container tasks):
// {"memory_mb": N, "cpus": X, "pids": N}. Zero = not asked; the node's default applies
// (docs/ISOLATION.md).
struct Resources {
  int64_t memory_mb = 0;  // 4 .. kMaxMemoryMb
  double cpus = 0;        // > 0 .. 1024; fractions allowed (0.5 = half a core)
  int64_t pids = 0;       // 1 .. kMaxPids: processes and threads at once
};
inline constexpr int64_t kMaxMemoryMb = 4 * 1024 * 1024;  // 4 TiB
inline constexpr int64_t kMaxPids = 4 * 1024 * 1024;

// A validated `exec` payload: {"argv": [...], "env": {...}, "cwd": "...", "stdin": "...",
// "network": bool, "resources": {...}}.
struct ExecRequest {
  std::vector<std::string> argv;           // non-empty; argv[0] is looked up in PATH
  std::map<std::string, std::string> env;  // added to the task's environment
  std::string cwd;         // "" = the task's work dir (sandboxed) or the node's working directory
  std::string stdin_data;  // written to the command's stdin, which is then closed
  bool network = false;    // sandboxed: keep the host's network (default: loopback only)
  Resources resources;
};

// Reads an `exec` payload: an object; argv a non-empty array of strings whose first is not
// empty; env an object of string values with names that are non-empty and hold no '='; cwd and
// stdin strings; no NUL byte in argv, env or cwd; network a boolean; resources as
// parseResources; no other field. The error names the field.
tl::expected<ExecRequest, ValidationError> parseExecPayload(const Json& payload);

// Reads `resources` (the field of `payload.resources`): an object with optional memory_mb (a
// whole number from 4 to kMaxMemoryMb), cpus (a number above 0, at most 1024) and pids (a
// whole number from 1 to kMaxPids); no other field.
tl::expected<Resources, ValidationError> parseResources(const Json& resources);

// A validated `container` payload: {"image": "...", "argv": [...], "env": {...},
// "network": bool, "resources": {...}}.
struct ContainerRequest {
  std::string image;              // non-empty, no whitespace, does not start with '-'
  std::vector<std::string> argv;  // may be empty: the image's own command
  std::map<std::string, std::string> env;
  bool network = false;  // default: no network at all
  Resources resources;
};

// Reads a `container` payload: image required (1-512 characters, no whitespace or control
// characters, not starting with '-'); argv an array of strings; env, network and resources as for
// exec; no other field. The error names the field.
tl::expected<ContainerRequest, ValidationError> parseContainerPayload(const Json& payload);

// `sleep`: an object with an optional `ms`, a number from 0 to kMaxSleepMs (default 0); no
// other field.
std::optional<ValidationError> validateSleepPayload(const Json& payload);
// `fail`: an object with an optional `message`, a string; no other field.
std::optional<ValidationError> validateFailPayload(const Json& payload);
// `exec`: see parseExecPayload.
std::optional<ValidationError> validateExecPayload(const Json& payload);
// `container`: see parseContainerPayload.
std::optional<ValidationError> validateContainerPayload(const Json& payload);

// The validator of a built-in type (sleep, fail, exec, container); empty for the built-ins that
// take any payload (noop, echo) and for every other type.
PayloadValidator builtinPayloadValidator(std::string_view type);

}  // namespace drover::tasks
