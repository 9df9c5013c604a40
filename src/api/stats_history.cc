#include "api/stats_history.h"

#include <fmt/format.h>
#include <httplib.h>

#include <chrono>
#include <future>
#include <map>
#include <utility>

#include "base/clock.h"

namespace drover::api {

namespace {

StatsCounts minus(const StatsCounts& a, const StatsCounts& b) {
  return {a.submitted - b.submitted, a.succeeded - b.succeeded, a.failed - b.failed,
          a.retried - b.retried};
}

bool anyNegative(const StatsCounts& c) {
  return c.submitted < 0 || c.succeeded < 0 || c.failed < 0 || c.retried < 0;
}

int64_t floorTo(int64_t v, int64_t step) { return v - ((v % step) + step) % step; }

constexpr const char* kFields[] = {"submitted", "succeeded", "failed", "retried"};

}  // namespace

StatsRing::StatsRing(size_t slots, int64_t step_ms)
    : slots_(slots), step_ms_(step_ms), ring_(slots) {
  for (auto& b : ring_) b.at = -1;  // no bucket yet
}

void StatsRing::record(int64_t wall_ms, const StatsCounts& totals) {
  std::lock_guard lock(mu_);
  std::optional<StatsCounts> previous = last_;
  last_ = totals;
  if (!previous) return;
  StatsCounts delta = minus(totals, *previous);
  if (anyNegative(delta)) return;  // a reset: `totals` is the new baseline
  int64_t at = floorTo(wall_ms, step_ms_);
  auto& b = ring_[static_cast<size_t>((at / step_ms_) % static_cast<int64_t>(slots_))];
  if (b.at != at) b = StatsBucket{at, {}};
  b.counts.submitted += delta.submitted;
  b.counts.succeeded += delta.succeeded;
  b.counts.failed += delta.failed;
  b.counts.retried += delta.retried;
}

std::vector<StatsBucket> StatsRing::window(int64_t now_ms) const {
  std::lock_guard lock(mu_);
  std::vector<StatsBucket> out;
  out.reserve(slots_);
  int64_t newest = floorTo(now_ms, step_ms_);
  for (int64_t at = newest - static_cast<int64_t>(slots_ - 1) * step_ms_; at <= newest;
       at += step_ms_) {
    const auto& b = ring_[static_cast<size_t>(
        ((at / step_ms_) % static_cast<int64_t>(slots_) + static_cast<int64_t>(slots_)) %
        static_cast<int64_t>(slots_))];
    out.push_back(b.at == at ? b : StatsBucket{at, {}});
  }
  return out;
}

StatsSampler::StatsSampler(base::Registry& registry, StatsRing& ring)
    : registry_(registry), ring_(ring) {
  executor_.post([this] { tick(); });
}

StatsSampler::~StatsSampler() { executor_.stop(); }

StatsCounts StatsSampler::read(const base::Registry& r) {
  const char* done = "drover_tasks_completed_total";
  return {r.counterValue("drover_tasks_submitted_total", {{"result", "created"}}),
          r.counterValue(done, {{"outcome", "succeeded"}}),
          r.counterValue(done, {{"outcome", "failed"}}),
          r.counterValue(done, {{"outcome", "retried"}})};
}

void StatsSampler::tick() {
  ring_.record(base::wallMillis(), read(registry_));
  // Sampled several times per bucket, so a bucket's counts are those of its own span to within
  // a fraction of it.
  executor_.postAfter(std::chrono::milliseconds(ring_.stepMs() / 5), [this] { tick(); });
}

tasks::Json historyJson(const std::vector<StatsBucket>& buckets, int64_t step_ms, int64_t now_ms) {
  tasks::Json list = tasks::Json::array();
  for (const auto& b : buckets) {
    list.push_back({{"at", b.at},
                    {"submitted", b.counts.submitted},
                    {"succeeded", b.counts.succeeded},
                    {"failed", b.counts.failed},
                    {"retried", b.counts.retried}});
  }
  return {{"step_ms", step_ms}, {"now", now_ms}, {"buckets", std::move(list)}};
}

bool addHistory(tasks::Json& sum, const tasks::Json& other) {
  auto valid = [](const tasks::Json& j) {
    if (!j.is_object() || !j.contains("buckets") || !j["buckets"].is_array()) return false;
    for (const auto& b : j["buckets"]) {
      if (!b.is_object() || !b.contains("at") || !b["at"].is_number_integer()) return false;
      for (const char* f : kFields) {
        if (!b.contains(f) || !b[f].is_number() || b[f].get<double>() < 0) return false;
      }
    }
    return true;
  };
  if (!valid(sum) || !valid(other)) return false;
  std::map<int64_t, const tasks::Json*> theirs;
  for (const auto& b : other["buckets"]) theirs[b["at"].get<int64_t>()] = &b;
  for (auto& b : sum["buckets"]) {
    auto it = theirs.find(b["at"].get<int64_t>());
    if (it == theirs.end()) continue;
    for (const char* f : kFields) b[f] = b[f].get<double>() + (*it->second)[f].get<double>();
  }
  return true;
}

tasks::Json clusterHistory(const StatsRing& ring, const std::string& self,
                           const std::vector<std::string>& peers, bool tls,
                           const std::string& authorization, std::chrono::milliseconds timeout) {
  int64_t now = base::wallMillis();
  tasks::Json sum = historyJson(ring.window(now), ring.stepMs(), now);
  tasks::Json nodes = tasks::Json::array();
  nodes.push_back({{"http", self}, {"ok", true}});
  // One thread per peer: a cluster has a handful of nodes, and each call is bounded by `timeout`.
  std::vector<std::future<std::pair<std::optional<tasks::Json>, std::string>>> answers;
  for (const auto& peer : peers) {
    answers.push_back(std::async(std::launch::async, [&, peer]() {
      using Answer = std::pair<std::optional<tasks::Json>, std::string>;
      httplib::Client cli((tls ? "https://" : "http://") + peer);
      auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout).count();
      auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count() % 1000000;
      cli.set_connection_timeout(secs, usecs);
      cli.set_read_timeout(secs, usecs);
      httplib::Headers headers;
      if (!authorization.empty()) headers.emplace("Authorization", authorization);
      auto res = cli.Get("/v1/stats/history?scope=node", headers);
      if (!res) return Answer{std::nullopt, "no answer: " + httplib::to_string(res.error())};
      if (res->status != 200) return Answer{std::nullopt, fmt::format("HTTP {}", res->status)};
      auto j = tasks::Json::parse(res->body, nullptr, false);
      if (j.is_discarded()) return Answer{std::nullopt, "not JSON"};
      return Answer{std::move(j), ""};
    }));
  }
  for (size_t i = 0; i < peers.size(); ++i) {
    auto [j, error] = answers[i].get();
    if (j && !addHistory(sum, *j)) error = "not a history";
    if (error.empty()) {
      nodes.push_back({{"http", peers[i]}, {"ok", true}});
    } else {
      nodes.push_back({{"http", peers[i]}, {"ok", false}, {"error", error}});
    }
  }
  sum["nodes"] = std::move(nodes);
  return sum;
}

}  // namespace drover::api
