#include "base/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <sstream>

namespace drover::base {
namespace {

TEST(Log, JsonLinesParseWhateverTheMessageHolds) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger logger("json-test", sink);
  logger.set_formatter(makeJsonFormatter());
  logger.set_level(spdlog::level::trace);
  const std::vector<std::string> messages = {"plain",
                                             R"(a "quoted" word)",
                                             R"(back\slash C:\tmp)",
                                             "two\nlines\r\n",
                                             "tab\there",
                                             std::string("bell\x07 nul-free ctl\x1f"),
                                             "utf-8: caf\xc3\xa9",
                                             "{\"json\": [1, 2]}",
                                             ""};
  for (const auto& m : messages) logger.warn("{}", m);
  logger.flush();

  std::istringstream in(out.str());
  std::string line;
  size_t i = 0;
  while (std::getline(in, line)) {
    ASSERT_LT(i, messages.size()) << "more lines than messages: " << line;
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    EXPECT_EQ(j.at("msg").get<std::string>(), messages[i]);
    EXPECT_EQ(j.at("level").get<std::string>(), "warning");
    EXPECT_TRUE(j.at("thread").is_number());
    EXPECT_EQ(j.at("ts").get<std::string>().size(),
              std::string("2024-01-01T00:00:00.000+00:00").size());
    ++i;
  }
  EXPECT_EQ(i, messages.size());
}

TEST(Log, RejectsUnknownLevelOrFormat) {
  EXPECT_FALSE(initLogging("loud"));
  EXPECT_FALSE(initLogging("info", "xml"));
  EXPECT_TRUE(initLogging("info", "json"));
  EXPECT_TRUE(initLogging("warn", "text"));
}

}  // namespace
}  // namespace drover::base
