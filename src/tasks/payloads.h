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

// A validated `exec` payload: {"argv": [...], "env": {...}, "cwd": "...", "stdin": "..."}.
struct ExecRequest {
  std::vector<std::string> argv;           // non-empty; argv[0] is looked up in the node's PATH
  std::map<std::string, std::string> env;  // added to (or replacing in) the node's environment
  std::string cwd;                         // "" = the node's working directory
  std::string stdin_data;                  // written to the command's stdin, which is then closed
};

// Reads an `exec` payload: an object; argv a non-empty array of strings whose first is not
// empty; env an object of string values with names that are non-empty and hold no '='; cwd and
// stdin strings; no NUL byte in argv, env or cwd; no other field. The error names the field.
tl::expected<ExecRequest, ValidationError> parseExecPayload(const Json& payload);

// `sleep`: an object with an optional `ms`, a number from 0 to kMaxSleepMs (default 0); no
// other field.
std::optional<ValidationError> validateSleepPayload(const Json& payload);
// `fail`: an object with an optional `message`, a string; no other field.
std::optional<ValidationError> validateFailPayload(const Json& payload);
// `exec`: see parseExecPayload.
std::optional<ValidationError> validateExecPayload(const Json& payload);

// The validator of a built-in type (sleep, fail, exec); empty for the built-ins that take any
// payload (noop, echo) and for every other type.
PayloadValidator builtinPayloadValidator(std::string_view type);

}  // namespace drover::tasks
