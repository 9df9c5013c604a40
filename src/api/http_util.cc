#include "api/http_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace drover::api {

using tasks::Json;

namespace {

struct TooDeep : std::exception {
  const char* what() const noexcept override { return "too deep"; }
};

}  // namespace

std::string dumpJson(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string quote(std::string_view s) {
  if (s.size() <= kMaxDetailInput) return std::string(s);
  return fmt::format("{}... ({} bytes)", s.substr(0, kMaxDetailInput), s.size());
}

bool isJsonContentType(const std::string& value) {
  std::string media = value.substr(0, value.find(';'));
  media.erase(
      std::remove_if(media.begin(), media.end(), [](unsigned char c) { return std::isspace(c); }),
      media.end());
  std::transform(media.begin(), media.end(), media.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return media == "application/json";
}

tl::expected<Json, std::string> parseBody(const std::string& body, int max_depth) {
  if (body.empty()) return tl::unexpected(std::string("the request body is empty"));
  try {
    Json::parser_callback_t cb = [max_depth](int depth, Json::parse_event_t event, Json&) {
      if ((event == Json::parse_event_t::object_start ||
           event == Json::parse_event_t::array_start) &&
          depth >= max_depth) {
        throw TooDeep();
      }
      return true;
    };
    return Json::parse(body, cb, /*allow_exceptions=*/true);
  } catch (const TooDeep&) {
    return tl::unexpected(fmt::format("the JSON body is nested deeper than {} levels", max_depth));
  } catch (const Json::parse_error& e) {
    return tl::unexpected(fmt::format("malformed JSON: {}", e.what()));
  }
}

tl::expected<int64_t, std::string> parseInt(const std::string& s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    return tl::unexpected(fmt::format("'{}' is not an integer", quote(s)));
  }
  return v;
}

Json workerJson(const WorkerView& w) {
  Json j = tasks::toJson(w.info);
  j["running"] = w.running;
  j["assigned"] = w.assigned;
  j["leader"] = w.leader;
  return j;
}

}  // namespace drover::api
