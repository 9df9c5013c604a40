#include "coord/paths.h"

namespace drover::coord {

std::string join(std::string_view parent, std::string_view child) {
  std::string out(parent);
  if (out.empty() || out.back() != '/') out.push_back('/');
  out.append(child);
  return out;
}

std::string parentOf(std::string_view path) {
  auto pos = path.rfind('/');
  if (pos == std::string_view::npos || pos == 0) return "/";
  return std::string(path.substr(0, pos));
}

std::string_view baseName(std::string_view path) {
  auto pos = path.rfind('/');
  return pos == std::string_view::npos ? path : path.substr(pos + 1);
}

bool isValidPath(std::string_view path) {
  if (path.empty() || path[0] != '/') return false;
  if (path == "/") return true;
  if (path.back() == '/') return false;
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      if (c == '\0' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
    }
    start = end + 1;
  }
  return true;
}

int64_t sequenceOf(std::string_view name) {
  if (name.size() < 10) return -1;
  std::string_view digits = name.substr(name.size() - 10);
  int64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  return value;
}

bool bySequence(std::string_view a, std::string_view b) { return sequenceOf(a) < sequenceOf(b); }

Status ensurePath(Coordination& coord, const std::string& path) {
  if (path == "/") return {};
  auto exists = coord.exists(path, nullptr).get();
  if (exists && exists->has_value()) return {};
  if (auto parent = parentOf(path); parent != "/") {
    if (auto st = ensurePath(coord, parent); !st) return st;
  }
  auto created = coord.create(CreateOp{path, "", CreateMode::kPersistent, {}}).get();
  if (created || created.error().code() == Code::kNodeExists) return {};
  return tl::unexpected(created.error());
}

}  // namespace drover::coord
