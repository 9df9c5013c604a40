#include "base/metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <thread>
#include <vector>

namespace drover::base {
namespace {

// A minimal reader of the text exposition format, written for these tests: one parsed line per
// sample, comments checked for shape. Fails the test on any line it cannot read.
struct ParsedSample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string value;
};

std::vector<ParsedSample> parseExposition(const std::string& text) {
  std::vector<ParsedSample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) continue;
    EXPECT_FALSE(line.empty() || line[0] == '#') << "unexpected line: " << line;
    ParsedSample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') s.name += line[i++];
    EXPECT_TRUE(isValidMetricName(s.name)) << line;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::string key;
        while (i < line.size() && line[i] != '=') key += line[i++];
        EXPECT_TRUE(isValidLabelName(key)) << line;
        EXPECT_EQ(line.substr(i, 2), "=\"") << line;
        i += 2;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) {
            char n = line[i + 1];
            value += n == 'n' ? '\n' : n;
            i += 2;
          } else {
            value += line[i++];
          }
        }
        ++i;  // closing quote
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // closing brace
    }
    EXPECT_EQ(i < line.size() ? line[i] : '\0', ' ') << line;
    s.value = line.substr(i + 1);
    EXPECT_FALSE(s.value.empty()) << line;
    out.push_back(std::move(s));
  }
  return out;
}

TEST(Metrics, RendersCountersAndGaugesExactly) {
  Registry r;
  r.counter("drover_b_total", "B things.", {{"result", "ok"}}).inc();
  r.counter("drover_b_total", "B things.", {{"result", "ok"}}).inc(2);
  r.counter("drover_b_total", "B things.", {{"result", "bad"}}).inc();
  r.gauge("drover_a", "An a.\nSecond line \\ here").set(2.5);
  EXPECT_EQ(r.render(),
            "# HELP drover_a An a.\\nSecond line \\\\ here\n"
            "# TYPE drover_a gauge\n"
            "drover_a 2.5\n"
            "# HELP drover_b_total B things.\n"
            "# TYPE drover_b_total counter\n"
            "drover_b_total{result=\"bad\"} 1\n"
            "drover_b_total{result=\"ok\"} 3\n");
}

TEST(Metrics, CounterValueReadsWithoutCreating) {
  Registry r;
  EXPECT_EQ(r.counterValue("x_total", {{"k", "a"}}), 0);
  EXPECT_EQ(r.render(), "");  // the lookup created nothing
  r.counter("x_total", "X", {{"k", "a"}}).inc(3);
  EXPECT_EQ(r.counterValue("x_total", {{"k", "a"}}), 3);
  EXPECT_EQ(r.counterValue("x_total", {{"k", "b"}}), 0);
  r.gauge("g", "G").set(5);
  EXPECT_EQ(r.counterValue("g"), 0);  // not a counter
}

TEST(Metrics, CountersNeverGoDown) {
  Registry r;
  auto& c = r.counter("drover_c_total", "C.");
  c.inc(3);
  c.inc(-1);
  EXPECT_EQ(c.value(), 3);
}

TEST(Metrics, HistogramBucketsAreCumulativeAndInclusive) {
  Registry r;
  auto& h = r.histogram("drover_op_seconds", "Op time.", {0.1, 1, 10}, {{"op", "get"}});
  for (double v : {0.05, 0.1, 0.5, 1.0, 3.0, 100.0}) h.observe(v);
  EXPECT_EQ(r.render(),
            "# HELP drover_op_seconds Op time.\n"
            "# TYPE drover_op_seconds histogram\n"
            "drover_op_seconds_bucket{op=\"get\",le=\"0.1\"} 2\n"
            "drover_op_seconds_bucket{op=\"get\",le=\"1\"} 4\n"
            "drover_op_seconds_bucket{op=\"get\",le=\"10\"} 5\n"
            "drover_op_seconds_bucket{op=\"get\",le=\"+Inf\"} 6\n"
            "drover_op_seconds_sum{op=\"get\"} 104.65\n"
            "drover_op_seconds_count{op=\"get\"} 6\n");
  auto s = h.snapshot();
  EXPECT_EQ(s.count, 6u);
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 4, 5, 6}));
}

TEST(Metrics, EscapesLabelValues) {
  Registry r;
  r.gauge("drover_g", "G.", {{"path", "a\\b \"q\"\nz"}}).set(1);
  std::string text = r.render();
  EXPECT_NE(text.find("drover_g{path=\"a\\\\b \\\"q\\\"\\nz\"} 1\n"), std::string::npos) << text;
  auto samples = parseExposition(text);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].labels["path"], "a\\b \"q\"\nz");
}

TEST(Metrics, FormatsSpecialValues) {
  EXPECT_EQ(formatMetricValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(formatMetricValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(formatMetricValue(0.0 / 0.0), "NaN");
  EXPECT_EQ(formatMetricValue(42), "42");
  EXPECT_EQ(formatMetricValue(0.25), "0.25");
  EXPECT_EQ(formatMetricValue(1e21), "1e+21");
}

TEST(Metrics, ValidatesNames) {
  EXPECT_TRUE(isValidMetricName("drover_x:y_1"));
  EXPECT_FALSE(isValidMetricName("1x"));
  EXPECT_FALSE(isValidMetricName("a-b"));
  EXPECT_FALSE(isValidMetricName(""));
  EXPECT_TRUE(isValidLabelName("op"));
  EXPECT_FALSE(isValidLabelName("__reserved"));
  EXPECT_FALSE(isValidLabelName("a:b"));
}

TEST(MetricsDeathTest, MisuseAborts) {
  Registry r;
  r.counter("drover_x_total", "X.");
  EXPECT_DEATH(r.gauge("drover_x_total", "X."), "another type");
  EXPECT_DEATH(r.counter("drover_x_total", "X.", {{"a", "b"}}), "other label names");
  EXPECT_DEATH(r.histogram("drover_h_seconds", "H.", {1, 0.5}), "increasing");
  EXPECT_DEATH(r.histogram("drover_h2_seconds", "H.", {1}, {{"le", "x"}}), "le");
  EXPECT_DEATH(r.gauge("bad-name", "B."), "invalid metric name");
}

TEST(Metrics, CallbacksAreReadAtScrapeTimeUntilRemoved) {
  Registry r;
  double value = 1;
  {
    CallbackHandle h(r, r.addCallback("drover_queue", "Queue.", MetricType::kGauge, [&] {
      return std::vector<Sample>{{{{"state", "pending"}}, value}, {{{"state", "running"}}, 2}};
    }));
    value = 7;
    EXPECT_EQ(r.render(),
              "# HELP drover_queue Queue.\n"
              "# TYPE drover_queue gauge\n"
              "drover_queue{state=\"pending\"} 7\n"
              "drover_queue{state=\"running\"} 2\n");
  }
  EXPECT_EQ(r.render(), "");
}

TEST(Metrics, ConcurrentUpdatesAreAllCounted) {
  Registry r;
  constexpr int kThreads = 8, kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Lookups race with each other and with rendering too.
      auto& c = r.counter("drover_n_total", "N.", {{"k", t % 2 == 0 ? "even" : "odd"}});
      auto& h = r.histogram("drover_d_seconds", "D.", {0.5, 1.5});
      auto& g = r.gauge("drover_g", "G.");
      for (int i = 0; i < kEach; ++i) {
        c.inc();
        h.observe(i % 2);
        g.inc();
        if (i % 5000 == 0) (void)r.render();
      }
    });
  }
  for (auto& t : threads) t.join();
  double total = 0;
  for (auto& s : parseExposition(r.render())) {
    if (s.name == "drover_n_total") {
      total += std::stod(s.value);
    } else if (s.name == "drover_d_seconds_count") {
      EXPECT_EQ(s.value, std::to_string(kThreads * kEach));
    } else if (s.name == "drover_d_seconds_sum") {
      EXPECT_EQ(std::stod(s.value), kThreads * kEach / 2);
    } else if (s.name == "drover_g") {
      EXPECT_EQ(std::stod(s.value), kThreads * kEach);
    } else if (s.name == "drover_d_seconds_bucket" && s.labels["le"] == "0.5") {
      EXPECT_EQ(std::stod(s.value), kThreads * kEach / 2);
    }
  }
  EXPECT_EQ(total, kThreads * kEach);
}

TEST(Metrics, ParserReadsEveryRenderedLine) {
  Registry r;
  r.counter("drover_t_total", "T.", {{"result", "created"}, {"code", "202"}}).inc(5);
  r.histogram("drover_w_seconds", "W.", kTaskDurationBuckets).observe(0.3);
  auto samples = parseExposition(r.render());
  ASSERT_EQ(samples.size(), 1 + kTaskDurationBuckets.size() + 3);
  EXPECT_EQ(samples[0].name, "drover_t_total");
  EXPECT_EQ(samples[0].labels["result"], "created");
  EXPECT_EQ(samples[0].labels["code"], "202");
  EXPECT_EQ(samples[0].value, "5");
}

}  // namespace
}  // namespace drover::base
