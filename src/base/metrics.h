#pragma once

// A small Prometheus metrics registry, rendered in the text exposition format 0.0.4.
//
// Hand-written because Debian 12 packages no Prometheus client library for C++ (no prometheus-cpp)
// and Drover takes its dependencies from Debian only; what a node exports is small enough that
// counters, gauges, fixed-bucket histograms and scrape-time callbacks cover it.
//
// Naming (docs/METRICS.md): every name starts with `drover_`, uses base units (seconds, bytes),
// counters end in `_total`, duration histograms in `_seconds`. Label values must come from a
// small, bounded set (an outcome, an op name, a priority): never a task id, or the number of
// series grows without bound.
//
// Thread safety: everything here is thread-safe. Updating a metric (inc, set, observe) is a few
// atomic operations and takes no lock, so instrumented code should look a metric up once (say into
// a function-local static reference) and update it on the hot path. Looking one up takes the
// registry's lock. Metric objects live as long as their registry and never move.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace drover::base {

// Label pairs of one series, {name, value}. The order given is the order rendered; every series
// of a family must use the same label names in the same order.
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };

// A monotonically increasing value.
class Counter {
 public:
  // Adds `v` (must be >= 0; a negative `v` is ignored: counters never go down).
  void inc(double v = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double v = 1) { value_.fetch_add(v, std::memory_order_relaxed); }
  void dec(double v = 1) { value_.fetch_sub(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted in fixed buckets: bucket i counts values <= bounds[i] (upper bounds,
// strictly increasing), plus the implicit +Inf bucket. Rendered cumulative as `_bucket{le=...}`,
// with `_sum` and `_count`.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // bounds.size() + 1 entries; the last is +Inf (= count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative
  std::atomic<double> sum_{0};
};

// Bucket sets for histograms, in seconds.
// Task run and queue wait times: 5 ms to one hour.
extern const std::vector<double> kTaskDurationBuckets;
// ZooKeeper request latency: 0.25 ms to 10 s.
extern const std::vector<double> kRequestDurationBuckets;

// One sample a callback reports at scrape time.
struct Sample {
  Labels labels;
  double value = 0;
};

// A set of metric families (a family: one name, one type, series told apart by their label
// values). Owns every metric it hands out.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Returns the series of family `name` with these labels, creating the family (with `help`) and
  // the series on first use. Asking for an existing name with another type, other label names or
  // other buckets is a programming error and aborts; so is an invalid metric or label name.
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help,
                       const std::vector<double>& bounds, const Labels& labels = {});

  // The value of one counter series; 0 when the family or the series does not exist yet (a
  // counter nobody has incremented). Never creates anything.
  double counterValue(std::string_view name, const Labels& labels = {}) const;

  // A family whose samples are read at scrape time (values owned elsewhere, such as a
  // component's stats). The callback runs on the scraping thread, may block briefly, and must not
  // call into this registry. Returns an id for removeCallback; the family disappears from the
  // output once removed. `type` is kGauge or kCounter.
  using Collector = std::function<std::vector<Sample>()>;
  uint64_t addCallback(std::string_view name, std::string_view help, MetricType type,
                       Collector collect);
  // After this returns the callback is not running and will not run again.
  void removeCallback(uint64_t id);

  // The text exposition format 0.0.4: families sorted by name, each with HELP and TYPE lines.
  std::string render() const;

 private:
  struct Family {
    MetricType type;
    std::string help;
    std::vector<std::string> label_names;
    std::vector<double> bounds;                // histograms
    std::map<std::string, Labels> label_sets;  // key: rendered labels
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  struct Callback {
    std::string name;
    std::string help;
    MetricType type;
    Collector collect;
  };

  Family& family(std::string_view name, std::string_view help, MetricType type,
                 const Labels& labels, const std::vector<double>& bounds);

  mutable std::mutex mu_;  // families_
  std::map<std::string, Family, std::less<>> families_;
  // Held while callbacks run, so removeCallback waits for a running scrape. Separate from mu_ so
  // a callback that waits on a thread which updates (or looks up) metrics cannot deadlock.
  mutable std::mutex callbacks_mu_;
  std::map<uint64_t, Callback> callbacks_;
  uint64_t next_callback_ = 1;
};

// Removes a callback from its registry when destroyed.
class CallbackHandle {
 public:
  CallbackHandle() = default;
  CallbackHandle(Registry& registry, uint64_t id) : registry_(&registry), id_(id) {}
  CallbackHandle(CallbackHandle&& other) noexcept { *this = std::move(other); }
  CallbackHandle& operator=(CallbackHandle&& other) noexcept;
  ~CallbackHandle() { reset(); }
  void reset();

 private:
  Registry* registry_ = nullptr;
  uint64_t id_ = 0;
};

// The process-wide registry that `drover node` serves on GET /metrics.
Registry& metrics();

// Formatting helpers of the exposition format (exposed for tests and for callers that render).
std::string escapeLabelValue(std::string_view value);  // \ " and newline escaped
std::string formatMetricValue(double value);           // +Inf, -Inf, NaN, shortest round-trip
bool isValidMetricName(std::string_view name);
bool isValidLabelName(std::string_view name);

}  // namespace drover::base
