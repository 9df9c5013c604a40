#include "jepsen/checker.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <sstream>

namespace drover::jepsen {

namespace {

// Evidence quotes stay short.
std::string cut(std::string s, size_t n = 300) {
  if (s.size() > n) s = s.substr(0, n) + "...";
  return s;
}

std::optional<tasks::TaskSpec> specOf(const Json& body) {
  auto spec = tasks::parseSpec(body, tasks::SubmitLimits{});
  if (!spec) return std::nullopt;
  return *spec;
}

std::string specText(const tasks::TaskSpec& s) { return tasks::toJson(s).dump(); }

std::string requestText(const Request& r) {
  return fmt::format("client {} {} via {} at {}..{} ms -> {}", r.client, r.kind, r.node, r.start_ms,
                     r.end_ms, r.status == 0 ? "no answer" : std::to_string(r.status));
}

// The first line of a succeeded exec task's stdout: the line its run appended to the log.
std::string resultLine(const tasks::TaskStatus& s) {
  if (!s.result.is_object()) return "";
  auto it = s.result.find("stdout");
  if (it == s.result.end() || !it->is_string()) return "";
  std::string out = it->get<std::string>();
  auto nl = out.find('\n');
  return nl == std::string::npos ? out : out.substr(0, nl);
}

}  // namespace

Json toJson(const Request& r) {
  return {{"client", r.client},
          {"kind", r.kind},
          {"id", r.id},
          {"body", r.body},
          {"node", r.node},
          {"start_ms", r.start_ms},
          {"end_ms", r.end_ms},
          {"status", r.status},
          {"outcome", r.acknowledged() ? "ok"
                      : r.unknown()    ? "unknown"
                                       : "rejected"}};
}

std::optional<Request> requestFromJson(const Json& j) {
  if (!j.is_object()) return std::nullopt;
  try {
    Request r;
    r.client = j.at("client").get<int>();
    r.kind = j.at("kind").get<std::string>();
    r.id = j.at("id").get<std::string>();
    r.body = j.at("body");
    r.node = j.value("node", "");
    r.start_ms = j.at("start_ms").get<int64_t>();
    r.end_ms = j.at("end_ms").get<int64_t>();
    r.status = j.at("status").get<int>();
    return r;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

std::optional<Execution> parseExecution(std::string_view line) {
  std::istringstream in{std::string(line)};
  Execution e;
  if (!(in >> e.id >> e.attempt >> e.worker >> e.token)) return std::nullopt;
  e.line = std::string(line);
  return e;
}

Json toJson(const Tree& tree) {
  Json statuses = Json::array();
  for (const auto& s : tree.statuses) {
    statuses.push_back({{"bucket", s.bucket},
                        {"id", s.id},
                        {"status", s.status ? tasks::toJson(*s.status) : Json(nullptr)}});
  }
  Json jobs = Json::array();
  for (const auto& [b, id] : tree.jobs) jobs.push_back({{"bucket", b}, {"id", id}});
  Json workers = Json::object();
  for (const auto& [id, info] : tree.workers) workers[id] = tasks::toJson(info);
  Json events = Json::array();
  for (const auto& r : tree.events) {
    Json list = Json::array();
    for (const auto& e : r.events) list.push_back(tasks::toJson(e));
    events.push_back({{"seq", r.seq}, {"events", list}});
  }
  return {{"statuses", statuses},
          {"jobs", jobs},
          {"assignments", tree.assignments},
          {"workers", workers},
          {"election", tree.election},
          {"events", events},
          {"epoch", tree.epoch},
          {"bucket_sizes", tree.bucket_sizes}};
}

std::vector<std::string> scanLog(std::string_view text, size_t max) {
  static const std::vector<std::string_view> kPatterns = {"ERROR: AddressSanitizer",
                                                          "runtime error:",
                                                          "WARNING: ThreadSanitizer",
                                                          "double free",
                                                          "Aborted",
                                                          "free(): ",
                                                          "corrupted size",
                                                          "malloc(): "};
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size() && out.size() < max) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    for (auto p : kPatterns) {
      if (line.find(p) != std::string_view::npos) {
        out.push_back(cut(std::string(line), 200));
        break;
      }
    }
    pos = nl + 1;
  }
  return out;
}

Json toJson(const Fault& f) {
  Json j = {{"kind", f.kind},
            {"target", f.target},
            {"start_ms", f.start_ms},
            {"heal_ms", f.heal_ms >= 0 ? Json(f.heal_ms) : Json(nullptr)}};
  if (!f.skipped.empty()) j["skipped"] = f.skipped;
  return j;
}

CheckReport check(const CheckInput& in) {
  CheckReport rep;
  auto fail = [&](std::string prop, std::string task, std::string evidence) {
    rep.violations.push_back({std::move(prop), std::move(task), std::move(evidence)});
  };

  // --- the history, per task id ---
  std::map<std::string, std::vector<const Request*>> by_id;
  for (const auto& r : in.requests) {
    by_id[r.id].push_back(&r);
    ++rep.requests;
    if (r.unknown()) ++rep.unknown;
    if (r.rejected()) ++rep.rejected;
    if (r.status == 409) ++rep.conflicts_409;
  }

  // --- the tree, per task id ---
  std::map<std::string, std::vector<const StatusEntry*>> statuses;
  for (const auto& s : in.tree.statuses) statuses[s.id].push_back(&s);
  std::map<std::string, int> tokens;
  std::map<std::string, std::vector<std::string>> token_places;
  for (const auto& [bucket, id] : in.tree.jobs) {
    ++tokens[id];
    token_places[id].push_back("/jobs/" + bucket + "/" + id);
  }
  for (const auto& [w, ids] : in.tree.assignments) {
    for (const auto& id : ids) {
      ++tokens[id];
      token_places[id].push_back("/assignments/" + w + "/" + id);
    }
  }
  std::map<std::string, std::vector<const Execution*>> runs;
  std::map<std::string, const Execution*> run_by_line;
  for (const auto& e : in.executions) {
    runs[e.id].push_back(&e);
    run_by_line[e.line] = &e;
    ++rep.executions;
  }

  // P1, P2, P8 per submitted id.
  std::set<std::string> acked_ids;
  for (const auto& [id, reqs] : by_id) {
    auto it = statuses.find(id);
    const tasks::TaskStatus* st = nullptr;
    if (it != statuses.end() && !it->second.empty() && it->second.front()->status) {
      st = &*it->second.front()->status;
    }
    const Request* first_ack = nullptr;
    const Request* first_202 = nullptr;
    for (const Request* r : reqs) {
      auto spec = specOf(r->body);
      if (!spec) {
        if (r->acknowledged()) fail("P8 idempotent submit", id, "an invalid spec was accepted");
        continue;
      }
      if (r->acknowledged()) {
        if (first_ack == nullptr) first_ack = r;
        acked_ids.insert(id);
        if (st == nullptr) continue;  // P1 below
        if (!(st->spec == *spec)) {
          fail(
              "P8 idempotent submit", id,
              fmt::format("{} answered {} for spec {} but the recorded spec is {}", requestText(*r),
                          r->status, cut(specText(*spec)), cut(specText(st->spec))));
        }
        if (r->status == 202) {
          if (first_202 != nullptr && first_202->end_ms < r->start_ms) {
            fail("P8 idempotent submit", id,
                 fmt::format("created twice: {} and later {}", requestText(*first_202),
                             requestText(*r)));
          }
          if (first_202 == nullptr) first_202 = r;
        }
      } else if (r->status == 409) {
        if (st == nullptr) {
          fail("P8 idempotent submit", id,
               fmt::format("{} but no task with this id exists", requestText(*r)));
        } else if (st->spec == *spec) {
          fail("P8 idempotent submit", id,
               fmt::format("{} for the recorded spec itself", requestText(*r)));
        }
      } else if (r->rejected()) {
        fail("P8 idempotent submit", id,
             fmt::format("{}: a valid submit was refused", requestText(*r)));
      }
    }
    // A 2xx for one spec before a request for another spec started: that one must not be 2xx.
    for (const Request* r : reqs) {
      if (!r->acknowledged() || first_ack == nullptr || r == first_ack) continue;
      auto a = specOf(first_ack->body);
      auto b = specOf(r->body);
      if (a && b && !(*a == *b)) {
        fail("P8 idempotent submit", id,
             fmt::format("two specs acknowledged: {} and {} (the second must be 409)",
                         requestText(*first_ack), requestText(*r)));
      }
    }
    if (first_ack != nullptr && st == nullptr) {
      ++rep.lost;
      fail("P1 lost", id,
           fmt::format("acknowledged ({}) but no status exists in the tree",
                       requestText(*first_ack)));
    } else if (first_ack != nullptr && !tasks::isTerminal(st->state)) {
      ++rep.lost;
      fail("P1 lost", id,
           fmt::format("acknowledged ({}) but still {} after the drain", requestText(*first_ack),
                       tasks::stateName(st->state)));
    }
    if (st != nullptr && first_ack == nullptr) {
      bool any_unknown =
          std::any_of(reqs.begin(), reqs.end(), [](auto* r) { return r->unknown(); });
      if (!any_unknown) {
        ++rep.phantom;
        fail("P2 phantom", id, "exists although every submit of it was refused");
      }
    }
    if (st != nullptr) {
      bool spec_submitted = std::any_of(reqs.begin(), reqs.end(), [&](auto* r) {
        auto s = specOf(r->body);
        return s && *s == st->spec && !r->rejected();
      });
      if (!spec_submitted) {
        fail("P2 phantom", id,
             "its recorded spec was never submitted (or only refused): " + cut(specText(st->spec)));
      }
    }
  }
  rep.acknowledged = static_cast<int64_t>(acked_ids.size());

  // Per task in the tree: P2, P3, P6, P9.
  for (const auto& [id, entries] : statuses) {
    ++rep.tasks_in_tree;
    if (!by_id.count(id)) {
      ++rep.phantom;
      fail("P2 phantom", id, "a status exists for an id no client submitted");
    }
    if (entries.size() > 1) {
      ++rep.duplicate_records;
      std::string where;
      for (auto* e : entries) where += " /status/" + e->bucket + "/" + id;
      fail("P3 one outcome", id, "more than one status node:" + where);
    }
    const StatusEntry& e = *entries.front();
    std::string want_bucket = fmt::format("{:02x}", tasks::Layout::bucketIndex(id));
    if (e.bucket != want_bucket) {
      fail("P9 structure", id,
           fmt::format("status in bucket {} instead of {}", e.bucket, want_bucket));
    }
    if (!e.status) {
      fail("P3 one outcome", id, "undecodable status data");
      continue;
    }
    const tasks::TaskStatus& st = *e.status;
    if (st.state == tasks::State::kSucceeded) ++rep.succeeded;
    if (st.state == tasks::State::kFailed) ++rep.failed;
    if (st.state == tasks::State::kCancelled) ++rep.cancelled;
    int t = tokens.count(id) ? tokens.at(id) : 0;
    if (t > 1) {
      std::string where;
      for (const auto& p : token_places[id]) where += " " + p;
      fail("P9 structure", id, "more than one token (both pending and assigned?):" + where);
    }
    if (tasks::isTerminal(st.state)) {
      if (t > 0) {
        fail("P9 structure", id,
             fmt::format("{} but its token is left behind: {}", tasks::stateName(st.state),
                         token_places[id].front()));
      }
    } else {
      if (!acked_ids.count(id)) {
        fail("P6 liveness", id,
             fmt::format("still {} after the drain", tasks::stateName(st.state)));
      }
      if (t == 0) fail("P9 structure", id, "not terminal and no token: it can never finish");
    }
    if (st.attempts < 0 || st.attempts > st.spec.max_attempts) {
      fail("P3 one outcome", id,
           fmt::format("attempts {} outside 0..{}", st.attempts, st.spec.max_attempts));
    }
    if (st.state == tasks::State::kSucceeded) {
      std::string line = resultLine(st);
      auto run = run_by_line.find(line);
      if (line.empty() || run == run_by_line.end()) {
        fail("P3 one outcome", id,
             fmt::format("succeeded with output '{}' that no logged execution wrote", cut(line)));
      } else {
        const Execution& x = *run->second;
        if (x.id != id) {
          fail("P3 one outcome", id, "its result is the run of another task: " + x.line);
        }
        if (x.attempt != "?" && x.attempt != std::to_string(st.attempts)) {
          fail("P4 zombie rejected", id,
               fmt::format("recorded attempt {} but the result is from the run of attempt {}",
                           st.attempts, x.attempt));
        }
        if (x.worker != "?" && x.worker != st.worker) {
          fail("P4 zombie rejected", id,
               fmt::format("recorded worker {} but the result is from the run on {}", st.worker,
                           x.worker));
        }
      }
    }
    if (st.state == tasks::State::kSucceeded && !runs.count(id)) {
      fail("P3 one outcome", id, "succeeded but never executed");
    }
  }

  // Tokens without a status: left behind.
  for (const auto& [id, n] : tokens) {
    if (!statuses.count(id)) {
      fail("P9 structure", id, "a token without a status: " + token_places[id].front());
    }
  }

  // P7: executions per task.
  for (const auto& [id, list] : runs) {
    if (list.size() > 1) ++rep.duplicate_executions;
    if (!by_id.count(id)) fail("P2 phantom", id, "executed but no client submitted it");
  }

  // P3, P4, P5 in the event log (commit order; the newest events_keep records are retained).
  std::map<std::string, const tasks::TaskEvent*> terminal_event;
  std::map<std::string, int> last_attempt;
  std::set<std::string> dup_counted;
  for (const auto& rec : in.tree.events) {
    for (const auto& ev : rec.events) {
      if (auto it = terminal_event.find(ev.id); it != terminal_event.end()) {
        if (tasks::isTerminal(ev.state)) {
          if (dup_counted.insert(ev.id).second) ++rep.duplicate_records;
          fail("P3 one outcome", ev.id,
               fmt::format("two outcomes committed: {} (attempt {}, {}) and later {} (attempt {}, "
                           "{}) in event e-{}",
                           tasks::stateName(it->second->state), it->second->attempt,
                           it->second->worker, tasks::stateName(ev.state), ev.attempt, ev.worker,
                           rec.seq));
        } else {
          fail("P4 zombie rejected", ev.id,
               fmt::format("a {} (attempt {}, {}) committed after its outcome, event e-{}",
                           tasks::stateName(ev.state), ev.attempt, ev.worker, rec.seq));
        }
        continue;
      }
      if (auto it = last_attempt.find(ev.id); it != last_attempt.end() && ev.attempt < it->second) {
        fail("P5 one leader", ev.id,
             fmt::format("attempt went back from {} to {} in event e-{} ({} by {})", it->second,
                         ev.attempt, rec.seq, tasks::stateName(ev.state), ev.worker));
      }
      last_attempt[ev.id] = std::max(last_attempt[ev.id], ev.attempt);
      if (tasks::isTerminal(ev.state)) terminal_event[ev.id] = &ev;
    }
  }
  if (in.max_epoch_seen >= 0 && in.tree.epoch >= 0 && in.tree.epoch < in.max_epoch_seen) {
    fail("P5 one leader", "",
         fmt::format("/epoch is at {} but epoch {} was seen during the run", in.tree.epoch,
                     in.max_epoch_seen));
  }

  // P9 directory bounds and membership.
  if (in.tree.events.size() > in.events_keep) {
    fail("P9 structure", "",
         fmt::format("/events holds {} records, over the bound of {}", in.tree.events.size(),
                     in.events_keep));
  }
  for (const auto& [path, n] : in.tree.bucket_sizes) {
    if (n > static_cast<int>(in.bucket_cap)) {
      fail("P9 structure", "",
           fmt::format("{} holds {} children, over {}", path, n, in.bucket_cap));
    }
  }
  for (const auto& [w, ids] : in.tree.assignments) {
    auto it = in.tree.workers.find(w);
    if (it == in.tree.workers.end()) {
      if (!ids.empty()) {
        fail("P9 structure", "",
             fmt::format("/assignments/{} holds {} tasks but its worker is gone", w, ids.size()));
      }
      continue;
    }
    int cap = it->second.slots + it->second.prefetch;
    if (static_cast<int>(ids.size()) > cap) {
      fail("P9 structure", "",
           fmt::format("/assignments/{} holds {} tasks, over slots + prefetch = {}", w, ids.size(),
                       cap));
    }
  }
  if (in.live_nodes > 0 && static_cast<int>(in.tree.workers.size()) != in.live_nodes) {
    fail("P9 structure", "",
         fmt::format("{} workers registered for {} live nodes", in.tree.workers.size(),
                     in.live_nodes));
  }
  if (in.live_nodes > 0 && static_cast<int>(in.tree.election.size()) != in.live_nodes) {
    fail("P9 structure", "",
         fmt::format("{} election candidates for {} live nodes (an orphan or a missing one)",
                     in.tree.election.size(), in.live_nodes));
  }

  // P6: the drain.
  if (in.drained_ms < 0) {
    fail("P6 liveness", "", "not every task was terminal within the drain deadline");
  } else {
    rep.worst_recovery_ms = std::max<int64_t>(0, in.drained_ms - in.last_heal_ms);
    if (in.recovery_bound_ms > 0 && rep.worst_recovery_ms > in.recovery_bound_ms) {
      fail("P6 liveness", "",
           fmt::format("everything terminal {} ms after the last heal, over the bound of {} ms",
                       rep.worst_recovery_ms, in.recovery_bound_ms));
    }
  }
  for (size_t i = 0; i < in.faults.size(); ++i) {
    const Fault& f = in.faults[i];
    rep.faults_by_kind[f.skipped.empty() ? f.kind : f.kind + " (skipped)"]++;
    if (!f.skipped.empty() || f.heal_ms < 0) continue;
    // Only until the next fault starts: a later one's outage is not this one's recovery.
    int64_t next = INT64_MAX;
    for (size_t k = i + 1; k < in.faults.size(); ++k) {
      if (in.faults[k].skipped.empty()) {
        next = in.faults[k].start_ms;
        break;
      }
    }
    int64_t best = -1;
    for (const auto& r : in.requests) {
      if (r.acknowledged() && r.start_ms >= f.heal_ms && r.end_ms < next &&
          (best < 0 || r.end_ms < best)) {
        best = r.end_ms;
      }
    }
    if (best >= 0) {
      rep.worst_first_ack_after_heal_ms =
          std::max(rep.worst_first_ack_after_heal_ms, best - f.heal_ms);
    }
  }

  // Node processes: none may die on its own or log a memory error or abort.
  for (const auto& n : in.nodes) {
    if (!n.exit.empty() && !n.ended_by_suite) {
      fail("crash", n.name,
           fmt::format("node (pid {}) died on its own: {}; log {}", n.pid, n.exit, n.log_path));
    }
    for (const auto& line : n.log_findings) {
      fail("crash", n.name, fmt::format("its log ({}) reports: {}", n.log_path, line));
    }
  }
  return rep;
}

std::string summarize(const CheckReport& r) {
  std::string out;
  std::string kinds;
  int total = 0;
  for (const auto& [k, n] : r.faults_by_kind) {
    kinds += fmt::format("{}{}={}", kinds.empty() ? "" : ", ", k, n);
    if (k.find("(skipped)") == std::string::npos) total += n;
  }
  out += fmt::format("[ figure ] faults injected: {} ({})\n", total, kinds);
  out += fmt::format(
      "[ figure ] requests: {}, acknowledged tasks: {}, unknown answers: {}, 4xx: {} (409: {})\n",
      r.requests, r.acknowledged, r.unknown, r.rejected, r.conflicts_409);
  out += fmt::format(
      "[ figure ] tasks in the tree: {} (succeeded {}, failed {}, cancelled {}), executions: {}\n",
      r.tasks_in_tree, r.succeeded, r.failed, r.cancelled, r.executions);
  out += fmt::format(
      "[ figure ] lost: {}, phantom: {}, tasks executed more than once: {}, duplicate records: "
      "{}\n",
      r.lost, r.phantom, r.duplicate_executions, r.duplicate_records);
  out += fmt::format(
      "[ figure ] worst recovery (last heal -> all terminal): {} ms; worst heal -> next "
      "acknowledged submit: {} ms\n",
      r.worst_recovery_ms, r.worst_first_ack_after_heal_ms);
  for (const auto& v : r.violations) {
    out += fmt::format("VIOLATION {}{}{}: {}\n", v.property, v.task.empty() ? "" : " ", v.task,
                       v.evidence);
  }
  out += r.ok() ? "[ jepsen ] PASS: every property holds\n"
                : fmt::format("[ jepsen ] FAIL: {} violation(s)\n", r.violations.size());
  return out;
}

}  // namespace drover::jepsen
