#include "jepsen/checker.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <set>

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

std::string outcomeText(const tasks::AttemptRecord& a) {
  return fmt::format("{} (attempt {}, {})", tasks::stateName(a.state), a.attempt,
                     a.worker.empty() ? "no worker" : a.worker);
}

// Where a token or a status lives, for the evidence.
std::string jobPlace(int protocol, const std::string& bucket, const std::string& id) {
  return protocol >= 2 ? "/pending/" + bucket + " (waiting)" : "/jobs/" + bucket + "/" + id;
}
std::string heldPlace(int protocol, const std::string& worker, const std::string& id) {
  return protocol >= 2 ? "/assignments/" + worker + " (in a chunk)"
                       : "/assignments/" + worker + "/" + id;
}
std::string statusPlace(int protocol, const std::string& bucket, const std::string& id) {
  return protocol >= 2 ? "/batches/" + bucket : "/status/" + bucket + "/" + id;
}

}  // namespace

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
    token_places[id].push_back(jobPlace(in.tree.protocol, bucket, id));
  }
  for (const auto& [w, ids] : in.tree.assignments) {
    for (const auto& id : ids) {
      ++tokens[id];
      token_places[id].push_back(heldPlace(in.tree.protocol, w, id));
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
    } else if (first_ack != nullptr && in.tree.protocol >= 2 && st->history.empty()) {
      ++rep.lost;
      fail("P1 lost", id,
           fmt::format("acknowledged ({}) but no outcome of it is recorded in the tree",
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
  std::set<std::string> dup_counted;  // tasks counted in duplicate_records
  for (const auto& [id, entries] : statuses) {
    ++rep.tasks_in_tree;
    if (!by_id.count(id)) {
      ++rep.phantom;
      fail("P2 phantom", id, "a status exists for an id no client submitted");
    }
    if (entries.size() > 1) {
      if (dup_counted.insert(id).second) ++rep.duplicate_records;
      std::string where;
      for (auto* e : entries) where += " " + statusPlace(in.tree.protocol, e->bucket, id);
      fail("P3 one outcome", id,
           (in.tree.protocol >= 2 ? "in more than one batch record:"
                                  : "more than one status node:") +
               where);
    }
    const StatusEntry& e = *entries.front();
    std::string want_bucket = fmt::format("{:02x}", tasks::Layout::bucketIndex(id));
    if (in.tree.protocol < 2 && e.bucket != want_bucket) {
      fail("P9 structure", id,
           fmt::format("status in bucket {} instead of {}", e.bucket, want_bucket));
    }
    if (!e.status) {
      fail("P3 one outcome", id, "undecodable status data");
      continue;
    }
    const tasks::TaskStatus& st = *e.status;
    // Protocol 2's history: retries are `pending` outcomes, then exactly one terminal one. The
    // suite never retries through the API (which re-opens a finished task), so nothing may be
    // recorded after the terminal outcome, and attempts only grow in record order.
    const tasks::AttemptRecord* terminal = nullptr;
    std::string terminals;
    int n_terminal = 0;
    int max_attempt = 0;
    for (const auto& h : st.history) {
      if (h.attempt < max_attempt) {
        fail("P5 one leader", id,
             fmt::format("attempt went back from {} to {} in its recorded history ({})",
                         max_attempt, h.attempt, outcomeText(h)));
      }
      max_attempt = std::max(max_attempt, h.attempt);
      if (terminal != nullptr && !tasks::isTerminal(h.state)) {
        fail("P4 zombie rejected", id,
             fmt::format("{} recorded after its outcome {}", outcomeText(h),
                         outcomeText(*terminal)));
      }
      if (tasks::isTerminal(h.state)) {
        ++n_terminal;
        terminals += (terminals.empty() ? "" : ", ") + outcomeText(h);
        if (terminal == nullptr) terminal = &h;
      }
    }
    if (n_terminal > 1) {
      if (dup_counted.insert(id).second) ++rep.duplicate_records;
      fail("P3 one outcome", id,
           fmt::format("{} terminal outcomes recorded in {}: {}", n_terminal,
                       statusPlace(in.tree.protocol, e.bucket, id), terminals));
    }
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
