#include "peer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "local/process.h"

namespace drover::bench {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

const Json* findScenario(const Json& scenarios, const std::string& name) {
  if (!scenarios.is_array()) return nullptr;
  for (const auto& s : scenarios) {
    if (s.value("scenario", "") == name) return &s;
  }
  return nullptr;
}

// figures[key] or figures[key][sub] as a number; NAN when absent or not a number.
double figure(const Json* scenario, const std::string& key, const std::string& sub = "") {
  if (scenario == nullptr || !scenario->contains("figures")) return NAN;
  const Json& f = (*scenario)["figures"];
  if (!f.contains(key)) return NAN;
  const Json& v =
      sub.empty() ? f[key] : (f[key].is_object() && f[key].contains(sub) ? f[key][sub] : Json());
  return v.is_number() ? v.get<double>() : NAN;
}

}  // namespace

PeerResult runCeleryPeer(const PeerOptions& o) {
  PeerResult result;
  std::string dir = local::makeTempDir("drover-bench-peer-");
  std::string out = dir + "/celery.json";
  std::vector<std::string> argv = {o.script,
                                   "--batch-tasks",
                                   std::to_string(o.batch_tasks),
                                   "--batch-clients",
                                   std::to_string(o.batch_clients),
                                   "--single-tasks",
                                   std::to_string(o.single_tasks),
                                   "--single-clients",
                                   std::to_string(o.single_clients),
                                   "--light-rate",
                                   number(o.light_rate),
                                   "--latency-seconds",
                                   number(o.latency_seconds),
                                   "--concurrency",
                                   std::to_string(o.concurrency),
                                   "--stall-seconds",
                                   std::to_string(o.stall_seconds),
                                   "--out",
                                   out};
  argv.push_back("--persistence");
  for (const auto& p : o.persistence) argv.push_back(p);
  if (!o.only.empty()) {
    argv.push_back("--only");
    for (const auto& p : o.only) argv.push_back(p);
  }
  try {
    local::Process peer(local::ProcessOptions{
        .argv = argv, .stdout_path = dir + "/stdout", .stderr_path = dir + "/stderr"});
    // Its progress lines, as they come. The deadline is generous: every scenario of the peer has
    // its own stall and deadline checks; this one only guards against a hung script.
    double tasks = static_cast<double>(o.batch_tasks + o.single_tasks) *
                   static_cast<double>(o.persistence.size());
    auto deadline = std::chrono::steady_clock::now() + 600s +
                    std::chrono::milliseconds(static_cast<int64_t>(tasks * 100));
    size_t printed = 0;
    std::optional<local::ExitStatus> status;
    while (!status) {
      status = peer.wait(200ms);
      std::string err = peer.readStderr();
      if (err.size() > printed) {
        std::cout << err.substr(printed) << std::flush;
        printed = err.size();
      }
      if (!status && std::chrono::steady_clock::now() > deadline) {
        peer.terminate();  // the script cleans up on SIGTERM
        status = peer.wait(30s);
        result.detail = "the peer did not finish before its deadline";
        break;
      }
    }
    if (status && status->exited() && status->code == 77) {
      result.skipped = true;
      result.detail = peer.readStderr();
    } else {
      std::ifstream f(out);
      if (f) result.doc = Json::parse(f, nullptr, false);
      if (result.doc.is_discarded() || !result.doc.is_object()) {
        result.doc = nullptr;
        if (result.detail.empty()) {
          result.detail = "no results from " + o.script + " (" +
                          (status ? status->toString() : std::string("still running")) + ")";
        }
      } else {
        result.ok =
            status && status->exited() && status->code == 0 && result.doc.value("ok", false);
        if (!result.ok && result.detail.empty()) result.detail = "a peer scenario failed";
      }
    }
  } catch (const std::exception& e) {
    result.detail = std::string("cannot run the peer: ") + e.what();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return result;
}

Json ratiosToPeer(const Json& drover_scenarios, const Json& peer) {
  Json out = Json::object();
  if (!peer.is_object() || !peer.contains("runs")) return out;
  struct Figure {
    const char* scenario;
    const char* key;
    const char* sub;
    const char* name;
  };
  static const Figure kFigures[] = {
      {"throughput-batch", "e2e_rate", "", "throughput-batch.e2e_rate"},
      {"throughput-batch", "submit_rate", "", "throughput-batch.submit_rate"},
      {"throughput-single", "e2e_rate", "", "throughput-single.e2e_rate"},
      {"throughput-single", "submit_rate", "", "throughput-single.submit_rate"},
      {"latency-light", "submit_to_done", "p50_ms", "latency-light.submit_to_done.p50_ms"},
      {"latency-light", "submit_to_done", "p99_ms", "latency-light.submit_to_done.p99_ms"},
  };
  for (const auto& run : peer["runs"]) {
    Json per = Json::object();
    for (const auto& f : kFigures) {
      double d = figure(findScenario(drover_scenarios, f.scenario), f.key, f.sub);
      double c =
          figure(findScenario(run.value("scenarios", Json::array()), f.scenario), f.key, f.sub);
      if (std::isnan(d) || std::isnan(c) || c == 0) continue;
      per[f.name] = {{"drover", d}, {"celery", c}, {"ratio", d / c}};
    }
    out[run.value("persistence", "?")] = per;
  }
  return out;
}

std::string ratiosText(const Json& ratios) {
  std::ostringstream s;
  for (const auto& [persistence, figures] : ratios.items()) {
    for (const auto& [name, v] : figures.items()) {
      char line[256];
      bool latency = name.find("_ms") != std::string::npos;
      std::snprintf(
          line, sizeof line, "[ vs celery (redis %s) ] %-38s drover %9.1f  celery %9.1f  %.2fx%s\n",
          persistence.c_str(), name.c_str(), v["drover"].get<double>(), v["celery"].get<double>(),
          v["ratio"].get<double>(), latency ? " (a time: below 1 is Drover faster)" : "");
      s << line;
    }
  }
  return s.str();
}

}  // namespace drover::bench
