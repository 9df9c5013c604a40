#include "base/metrics.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace drover::base {
namespace {

[[noreturn]] void misuse(const std::string& what) {
  spdlog::critical("metrics: {}", what);
  std::fprintf(stderr, "metrics: %s\n", what.c_str());
  std::abort();
}

std::string labelKey(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ',';
    out += labels[i].first;
    out += "=\"";
    out += escapeLabelValue(labels[i].second);
    out += '"';
  }
  out += '}';
  return out;
}

// Labels plus one more pair (the histogram's `le`), rendered.
std::string labelKeyWith(const Labels& labels, std::string_view name, std::string_view value) {
  Labels all = labels;
  all.emplace_back(std::string(name), std::string(value));
  return labelKey(all);
}

std::string escapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

const char* typeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void header(std::string& out, std::string_view name, std::string_view help, MetricType type) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escapeHelp(help), name, typeName(type));
}

void renderHistogram(std::string& out, const std::string& name, const Labels& labels,
                     const Histogram::Snapshot& s) {
  for (size_t i = 0; i <= s.bounds.size(); ++i) {
    std::string le = i < s.bounds.size() ? formatMetricValue(s.bounds[i]) : "+Inf";
    out += fmt::format("{}_bucket{} {}\n", name, labelKeyWith(labels, "le", le), s.cumulative[i]);
  }
  std::string key = labelKey(labels);
  out += fmt::format("{}_sum{} {}\n", name, key, formatMetricValue(s.sum));
  out += fmt::format("{}_count{} {}\n", name, key, s.count);
}

}  // namespace

const std::vector<double> kTaskDurationBuckets = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
const std::vector<double> kRequestDurationBuckets = {
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

void Counter::inc(double v) {
  if (!(v >= 0)) return;  // also drops NaN
  value_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::observe(double v) {
  if (std::isnan(v)) return;
  // The first bucket whose upper bound is >= v; past the end is +Inf.
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;  // so that _count always equals the +Inf bucket
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

Registry::Family& Registry::family(std::string_view name, std::string_view help, MetricType type,
                                   const Labels& labels, const std::vector<double>& bounds) {
  std::vector<std::string> names;
  for (const auto& [k, v] : labels) {
    if (!isValidLabelName(k)) misuse(fmt::format("invalid label name '{}' on {}", k, name));
    if (type == MetricType::kHistogram && k == "le") {
      misuse(fmt::format("histogram {} may not have a label named le", name));
    }
    names.push_back(k);
  }
  auto it = families_.find(name);
  if (it == families_.end()) {
    if (!isValidMetricName(name)) misuse(fmt::format("invalid metric name '{}'", name));
    if (type == MetricType::kHistogram) {
      if (!std::is_sorted(bounds.begin(), bounds.end()) ||
          std::adjacent_find(bounds.begin(), bounds.end()) != bounds.end() ||
          std::any_of(bounds.begin(), bounds.end(), [](double b) { return !std::isfinite(b); })) {
        misuse(fmt::format("histogram {} needs finite, strictly increasing bounds", name));
      }
    }
    Family f{type, std::string(help), names, bounds, {}, {}, {}, {}};
    it = families_.emplace(std::string(name), std::move(f)).first;
    return it->second;
  }
  Family& f = it->second;
  if (f.type != type) misuse(fmt::format("{} registered again with another type", name));
  if (f.label_names != names) misuse(fmt::format("{} used with other label names", name));
  if (type == MetricType::kHistogram && f.bounds != bounds) {
    misuse(fmt::format("{} registered again with other buckets", name));
  }
  return f;
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mu_);
  Family& f = family(name, help, MetricType::kCounter, labels, {});
  std::string key = labelKey(labels);
  auto& slot = f.counters[key];
  if (!slot) {
    slot = std::make_unique<Counter>();
    f.label_sets[key] = labels;
  }
  return *slot;
}

double Registry::counterValue(std::string_view name, const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto f = families_.find(name);
  if (f == families_.end() || f->second.type != MetricType::kCounter) return 0;
  auto c = f->second.counters.find(labelKey(labels));
  return c == f->second.counters.end() ? 0 : c->second->value();
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mu_);
  Family& f = family(name, help, MetricType::kGauge, labels, {});
  std::string key = labelKey(labels);
  auto& slot = f.gauges[key];
  if (!slot) {
    slot = std::make_unique<Gauge>();
    f.label_sets[key] = labels;
  }
  return *slot;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help,
                               const std::vector<double>& bounds, const Labels& labels) {
  std::lock_guard lock(mu_);
  Family& f = family(name, help, MetricType::kHistogram, labels, bounds);
  std::string key = labelKey(labels);
  auto& slot = f.histograms[key];
  if (!slot) {
    slot = std::make_unique<Histogram>(bounds);
    f.label_sets[key] = labels;
  }
  return *slot;
}

uint64_t Registry::addCallback(std::string_view name, std::string_view help, MetricType type,
                               Collector collect) {
  if (!isValidMetricName(name)) misuse(fmt::format("invalid metric name '{}'", name));
  if (type == MetricType::kHistogram) misuse("callback families are gauges or counters");
  std::lock_guard lock(callbacks_mu_);
  uint64_t id = next_callback_++;
  callbacks_.emplace(id, Callback{std::string(name), std::string(help), type, std::move(collect)});
  return id;
}

void Registry::removeCallback(uint64_t id) {
  std::lock_guard lock(callbacks_mu_);
  callbacks_.erase(id);
}

std::string Registry::render() const {
  // name -> rendered family; std::map keeps the output sorted by name.
  std::map<std::string, std::string> parts;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, f] : families_) {
      std::string out;
      header(out, name, f.help, f.type);
      for (const auto& [key, labels] : f.label_sets) {
        switch (f.type) {
          case MetricType::kCounter:
            out +=
                fmt::format("{}{} {}\n", name, key, formatMetricValue(f.counters.at(key)->value()));
            break;
          case MetricType::kGauge:
            out +=
                fmt::format("{}{} {}\n", name, key, formatMetricValue(f.gauges.at(key)->value()));
            break;
          case MetricType::kHistogram:
            renderHistogram(out, name, labels, f.histograms.at(key)->snapshot());
            break;
        }
      }
      parts[name] = std::move(out);
    }
  }
  {
    std::lock_guard lock(callbacks_mu_);
    for (const auto& [id, cb] : callbacks_) {
      std::vector<Sample> samples;
      try {
        samples = cb.collect();
      } catch (const std::exception& e) {
        spdlog::warn("metrics: the collector of {} failed: {}", cb.name, e.what());
        continue;
      }
      if (parts.count(cb.name) != 0) {
        spdlog::warn("metrics: {} is exported twice; the callback's samples are dropped", cb.name);
        continue;
      }
      std::string out;
      header(out, cb.name, cb.help, cb.type);
      for (const auto& s : samples) {
        bool ok = std::all_of(s.labels.begin(), s.labels.end(),
                              [](const auto& kv) { return isValidLabelName(kv.first); });
        if (!ok) continue;
        out += fmt::format("{}{} {}\n", cb.name, labelKey(s.labels), formatMetricValue(s.value));
      }
      parts[cb.name] = std::move(out);
    }
  }
  std::string out;
  for (auto& [name, text] : parts) out += text;
  return out;
}

CallbackHandle& CallbackHandle::operator=(CallbackHandle&& other) noexcept {
  if (this != &other) {
    reset();
    registry_ = std::exchange(other.registry_, nullptr);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

void CallbackHandle::reset() {
  if (registry_ != nullptr) registry_->removeCallback(id_);
  registry_ = nullptr;
  id_ = 0;
}

Registry& metrics() {
  static Registry* r = new Registry();  // lives for the process; never destroyed
  return *r;
}

std::string escapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string formatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", value);
}

bool isValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool isValidLabelName(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

}  // namespace drover::base
