// drover schedule create|list|show|delete: cron schedules over the REST API
// (docs/WORKFLOWS.md "Schedules", docs/CLI.md).

#include <fmt/format.h>

#include <iostream>
#include <memory>

#include "app/client_http.h"

namespace drover::app {

using Json = nlohmann::json;
using namespace client_detail;

namespace {

std::string specText(const Json& s) {
  if (s.contains("every_s")) return fmt::format("every {}s", s["every_s"].dump());
  return fmt::format("{} ({})", str(s, "cron"), str(s, "timezone"));
}

std::string firingText(const Json& s, const char* key) {
  auto it = s.find(key);
  if (it == s.end() || !it->is_object()) return "-";
  return str(*it, "at");
}

void printSchedule(const Json& s) {
  std::cout << fmt::format("id:        {}\n", str(s, "id"));
  std::cout << fmt::format("spec:      {}\n", specText(s));
  std::cout << fmt::format("overlap:   {}   catchup: {}\n", str(s, "overlap"), str(s, "catchup"));
  std::cout << fmt::format("next:      {}\n", firingText(s, "next_firing"));
  auto last = s.find("last_firing");
  std::cout << fmt::format(
      "last:      {}{}\n", firingText(s, "last_firing"),
      last != s.end() && last->is_object() ? fmt::format(" (task {})", str(*last, "task")) : "");
  std::cout << fmt::format("fired:     {}   skipped: {}\n", str(s, "fired"), str(s, "skipped"));
  std::cout << fmt::format("task:      {}\n", s.value("task", Json::object()).dump());
}

}  // namespace

std::array<CLI::App*, 4> addScheduleCommands(CLI::App& app, ClientOptions& o, int& exit_code) {
  auto* schedule = app.add_subcommand("schedule", "Cron schedules: create, list, show, delete");
  schedule->require_subcommand(1);

  struct CreateArgs {
    std::string id, cron, timezone, overlap, catchup, task = R"({"type":"noop"})";
    int64_t every = 0;
  };
  auto ca = std::make_shared<CreateArgs>();
  auto* create = schedule->add_subcommand("create", "Create a schedule (admin)");
  create->add_option("id", ca->id, "Schedule id (each firing's task is ID-SLOT)")->required();
  auto* cron =
      create->add_option("--cron", ca->cron, "Cron expression (5 fields, or 6 with seconds)");
  auto* every = create->add_option("--every", ca->every, "Fire every N seconds");
  cron->excludes(every);
  create->add_option("--timezone", ca->timezone, "IANA time zone of the cron expression (UTC)");
  create->add_option("--overlap", ca->overlap, "allow (default) or skip")
      ->check(CLI::IsMember({"allow", "skip"}));
  create->add_option("--catchup", ca->catchup, "none (default), one or all")
      ->check(CLI::IsMember({"none", "one", "all"}));
  create->add_option("--task", ca->task, R"(The task as JSON (default {"type":"noop"}))");
  create->callback([&o, &exit_code, ca] {
    Json task = Json::parse(ca->task, nullptr, false);
    if (task.is_discarded() || !task.is_object()) {
      std::cerr << "drover: --task must be a JSON object\n";
      exit_code = kExitUsage;
      return;
    }
    if (ca->cron.empty() && ca->every == 0) {
      std::cerr << "drover: give --cron or --every\n";
      exit_code = kExitUsage;
      return;
    }
    Json body = {{"id", ca->id}, {"task", task}};
    if (!ca->cron.empty()) body["cron"] = ca->cron;
    if (ca->every != 0) body["every_s"] = ca->every;
    if (!ca->timezone.empty()) body["timezone"] = ca->timezone;
    if (!ca->overlap.empty()) body["overlap"] = ca->overlap;
    if (!ca->catchup.empty()) body["catchup"] = ca->catchup;
    auto a = call(o, "POST", "/v1/schedules", &body, 30);
    if (a.status != 201 && a.status != 200) {
      exit_code = failure(a);
      return;
    }
    if (o.json) {
      std::cout << a.body.dump() << "\n";
    } else {
      std::cout << fmt::format("{} {}; next firing {}\n", ca->id,
                               a.status == 201 ? "created" : "exists (same spec)",
                               firingText(a.body, "next_firing"));
    }
    exit_code = kExitOk;
  });

  auto* list = schedule->add_subcommand("list", "List schedules with their next and last firing");
  list->callback([&o, &exit_code] {
    exit_code = show(o, "/v1/schedules", [](const Json& body) {
      std::cout << fmt::format("{:<24} {:<32} {:<21} {}\n", "ID", "SPEC", "NEXT", "LAST");
      for (const auto& s : body.value("schedules", Json::array())) {
        std::cout << fmt::format("{:<24} {:<32} {:<21} {}\n", str(s, "id"), specText(s),
                                 firingText(s, "next_firing"), firingText(s, "last_firing"));
      }
    });
  });

  auto id = std::make_shared<std::string>();
  auto* show_cmd = schedule->add_subcommand("show", "Show one schedule");
  show_cmd->add_option("id", *id, "Schedule id")->required();
  show_cmd->callback(
      [&o, &exit_code, id] { exit_code = show(o, "/v1/schedules/" + *id, printSchedule); });

  auto* del = schedule->add_subcommand("delete", "Delete a schedule; its fired tasks stay (admin)");
  del->add_option("id", *id, "Schedule id")->required();
  del->callback([&o, &exit_code, id] {
    auto a = call(o, "DELETE", "/v1/schedules/" + *id, nullptr, 30);
    if (a.status != 204) {
      exit_code = failure(a);
      return;
    }
    std::cout << (o.json ? Json{{"id", *id}, {"deleted", true}}.dump() : *id + " deleted") << "\n";
    exit_code = kExitOk;
  });
  return {create, list, show_cmd, del};
}

}  // namespace drover::app
