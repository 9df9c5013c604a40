#pragma once

// Dependencies between the tasks of one submit (docs/WORKFLOWS.md "Dependencies"): a task's
// `depends_on` lists ids of tasks that must succeed first. Inside one batch an entry names
// another task of the batch by its client id, or by its place as "#N" (for a task without an
// id: "#0" is the batch's first task); any other id must name an existing task. This module
// resolves the references of one batch and refuses cycles; it reads nothing.
//
// Thread safety: pure functions.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

#include "tasks/task.h"

namespace drover::tasks {

// The most entries one task's depends_on may hold.
inline constexpr size_t kMaxDependencies = kMaxDependsOn;

// The dependencies of one batch's tasks, resolved: `internal[i]` are the indices in the batch
// task i waits for (sorted, distinct), `external[i]` the ids outside it (sorted, distinct).
struct BatchDeps {
  std::vector<std::vector<uint32_t>> internal;
  std::vector<std::vector<std::string>> external;
  bool empty() const;
  // Every external id of the batch, once (sorted).
  std::vector<std::string> externalIds() const;
};

// "#N" -> N; nullopt for anything else (a plain id).
std::optional<uint32_t> parseIndexRef(std::string_view ref);

// Resolves the depends_on of `specs` (one batch, ids as submitted: "" for a task without an id).
// Errors name the task's field: "tasks[3].depends_on" with "#7 is past the batch's end",
// "depends on itself", or a cycle "a -> b -> a" spelled with ids or "#N".
tl::expected<BatchDeps, ValidationError> resolveDeps(const std::vector<TaskSpec>& specs);

}  // namespace drover::tasks
