#pragma once

#include <string>
#include <string_view>

namespace drover::base {

// 128 random bits as 32 lowercase hex characters (for election GUIDs, generated task ids).
std::string randomHex(size_t bytes = 16);

// True for a name that can be one znode path component chosen by a user: [A-Za-z0-9._-]{1,128},
// neither "." nor "..". Task ids and worker ids must pass it.
bool isValidName(std::string_view name);

}  // namespace drover::base
