#pragma once

#include <string>
#include <string_view>

#include "coord/coordination.h"

namespace drover::coord {

// "/a/b" + "c" -> "/a/b/c"; "/" + "c" -> "/c".
std::string join(std::string_view parent, std::string_view child);
// "/a/b/c" -> "/a/b"; "/a" -> "/".
std::string parentOf(std::string_view path);
// "/a/b/c" -> "c".
std::string_view baseName(std::string_view path);
// True for an absolute path with no empty, "." or ".." component and no NUL or trailing "/".
bool isValidPath(std::string_view path);
// The 10-digit counter a sequential create appended to `name`; -1 if there is none.
int64_t sequenceOf(std::string_view name);
// Orders names of sequential znodes by that counter, which a parent shares between prefixes
// ("e-" and "n-" records, election candidates): for std::sort, std::min_element and the like.
bool bySequence(std::string_view a, std::string_view b);

// Creates `path` and any missing ancestors as persistent nodes with empty data; succeeds when it
// already exists. Blocking; not for use on an event thread.
Status ensurePath(Coordination& coord, const std::string& path);

}  // namespace drover::coord
