#include "jepsen/nemesis.h"

#include <fmt/format.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <thread>

namespace drover::jepsen {

using namespace std::chrono_literals;

namespace {

const std::vector<std::string> kKinds = {"kill-worker",   "kill-leader",   "zombie-worker",
                                         "zombie-leader", "short-pause",   "zk-kill",
                                         "quorum-loss",   "fleet-restart", "partition"};

std::string partitionComment() { return fmt::format("drover-jepsen-{}", getpid()); }

// Runs a command to completion; its exit code, or -1 when it cannot run or hangs.
int runCommand(const std::vector<std::string>& argv) {
  try {
    local::Process p(argv);
    auto st = p.wait(10s);
    if (!st) return -1;
    return st->exited() ? st->code : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

PartitionSupport probePartition() {
  PartitionSupport s;
  if (geteuid() != 0) {
    s.reason = "not running as root";
    return s;
  }
  if (runCommand({"iptables", "-L", "-n"}) != 0) {
    s.reason = "`iptables -L` does not work here (not installed, or no CAP_NET_ADMIN)";
    return s;
  }
  struct passwd* pw = getpwnam("nobody");
  if (pw == nullptr) {
    s.reason = "no user `nobody` to run the partitioned node as";
    return s;
  }
  s.available = true;
  s.uid = static_cast<int>(pw->pw_uid);
  return s;
}

Nemesis::Nemesis(Fleet& fleet, uint64_t seed, Clock::time_point t0, const std::string& faults_path,
                 PartitionSupport partition)
    : fleet_(fleet), rng_(seed), t0_(t0), log_(faults_path), partition_(std::move(partition)) {}

Nemesis::~Nemesis() {
  if (partitioned_) partitionRule(false, partition_.uid);
}

int64_t Nemesis::nowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0_).count();
}

void Nemesis::record(const Fault& f) {
  faults_.push_back(f);
  log_ << toJson(f).dump() << "\n";
  log_.flush();
  std::cout << fmt::format("[ nemesis ] {:>7} ms {} {}{}\n", f.start_ms, f.kind, f.target,
                           f.skipped.empty() ? fmt::format(", healed at {} ms", f.heal_ms)
                                             : " skipped: " + f.skipped)
            << std::flush;
}

void Nemesis::reapCrashed() {
  for (int i : fleet_.reapCrashed()) {
    std::string what = fmt::format("{} died on its own at {} ms", fleet_.name(i), nowMs());
    std::cout << "[ nemesis ] " << what << "; restarting it\n" << std::flush;
    log_ << Json{{"kind", "node-died"}, {"target", fleet_.name(i)}, {"at_ms", nowMs()}}.dump()
         << "\n";
    crashes_.push_back(what);
    fleet_.restart(i);
  }
}

void Nemesis::hold(int64_t ms) {
  auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (Clock::now() < until) {
    reapCrashed();
    std::this_thread::sleep_for(std::min<Clock::duration>(50ms, until - Clock::now()));
  }
}

bool Nemesis::partitionRule(bool add, int uid) {
  const auto& zk = fleet_.zk();
  std::string ports;
  for (int i = 0; i < zk.size(); ++i) {
    ports += (ports.empty() ? "" : ",") + std::to_string(zk.clientPort(i));
  }
  return runCommand({"iptables",
                     add ? "-A" : "-D",
                     "OUTPUT",
                     "-o",
                     "lo",
                     "-p",
                     "tcp",
                     "-m",
                     "owner",
                     "--uid-owner",
                     std::to_string(uid),
                     "-m",
                     "multiport",
                     "--dports",
                     ports,
                     "-m",
                     "comment",
                     "--comment",
                     partitionComment(),
                     "-j",
                     "DROP"}) == 0;
}

void Nemesis::run(std::chrono::milliseconds duration) {
  const int session = fleet_.sessionTimeoutMs();
  while (nowMs() < duration.count()) {
    // The same draws per fault whatever happens, so the schedule depends on the seed alone.
    // Kinds come from a shuffled bag of all of them, so even a short run meets every kind.
    if (bag_.empty()) {
      bag_ = kKinds;
      std::shuffle(bag_.begin(), bag_.end(), rng_);
    }
    std::string kind = bag_.back();
    bag_.pop_back();
    uint64_t pick = rng_();
    int64_t quiet = 1000 + static_cast<int64_t>(rng_() % 2000);
    hold(quiet);
    if (nowMs() >= duration.count()) break;
    int64_t hold_ms = 0;
    if (kind == "zombie-worker" || kind == "zombie-leader") {
      hold_ms = session * 3 / 2 + static_cast<int64_t>(pick % 1000);
    } else if (kind == "partition") {
      // Longer than a pause: the server expires a session only at its next tick past the
      // timeout, and a dropped connection is noticed late, so the cut must outlast both.
      hold_ms = session * 2 + static_cast<int64_t>(pick % 1000);
    } else if (kind == "short-pause") {
      hold_ms = session / 3;
    } else if (kind == "quorum-loss") {
      hold_ms = 1000 + static_cast<int64_t>(pick % 2000);
    } else {
      hold_ms = 500 + static_cast<int64_t>(pick % 1500);
    }
    inject(kind, pick, hold_ms);
  }
  // Heal whatever is left: every node running and unpaused, every server serving.
  for (int i = 0; i < fleet_.size(); ++i) {
    fleet_.resume(i);
    if (!fleet_.running(i)) fleet_.restart(i);
  }
  for (int i = 0; i < fleet_.zk().size(); ++i) {
    if (!fleet_.zk().isRunning(i)) fleet_.zk().restart(i, false);
  }
  fleet_.zk().waitUntilServing(60s);
  if (partitioned_) partitioned_ = !partitionRule(false, partition_.uid);
  last_heal_ms_ = std::max(last_heal_ms_, nowMs());
}

void Nemesis::inject(const std::string& kind, uint64_t pick, int64_t hold_ms) {
  Fault f;
  f.kind = kind;
  const int n = fleet_.size();
  auto worker = [&] {
    // A node other than the leader, by position among them.
    int leader = fleet_.leaderIndex();
    std::vector<int> c;
    for (int i = 0; i < n; ++i) {
      if (i != leader) c.push_back(i);
    }
    return c.empty() ? 0 : c[pick % c.size()];
  };
  auto leader = [&] {
    int l = fleet_.leaderIndex();
    return l >= 0 ? l : static_cast<int>(pick % n);
  };
  auto heal = [&] {
    f.heal_ms = nowMs();
    last_heal_ms_ = f.heal_ms;
    record(f);
  };
  if (kind == "kill-worker" || kind == "kill-leader") {
    int i = kind == "kill-worker" ? worker() : leader();
    f.target = fleet_.name(i);
    f.start_ms = nowMs();
    fleet_.kill9(i);
    hold(hold_ms);
    if (!fleet_.restart(i)) f.target += " (slow to re-register)";
    heal();
  } else if (kind == "zombie-worker" || kind == "zombie-leader" || kind == "short-pause") {
    int i = kind == "zombie-worker"   ? worker()
            : kind == "zombie-leader" ? leader()
                                      : static_cast<int>(pick % n);
    f.target = fleet_.name(i);
    f.start_ms = nowMs();
    fleet_.pause(i);
    hold(hold_ms);
    fleet_.resume(i);
    heal();
  } else if (kind == "zk-kill") {
    int s = static_cast<int>(pick % fleet_.zk().size());
    f.target = fmt::format("zk{}", s + 1);
    f.start_ms = nowMs();
    fleet_.zk().kill9(s);
    hold(hold_ms);
    fleet_.zk().restart(s);
    heal();
  } else if (kind == "quorum-loss") {
    int keep = static_cast<int>(pick % fleet_.zk().size());
    std::vector<int> down;
    for (int s = 0; s < fleet_.zk().size(); ++s) {
      if (s != keep) down.push_back(s);
    }
    f.target = fmt::format("zk{},zk{}", down[0] + 1, down[1] + 1);
    f.start_ms = nowMs();
    for (int s : down) fleet_.zk().kill9(s);
    hold(hold_ms);
    for (int s : down) fleet_.zk().restart(s, false);
    if (!fleet_.zk().waitUntilServing(60s)) f.target += " (no quorum after 60 s)";
    heal();
  } else if (kind == "fleet-restart") {
    f.target = "all nodes";
    f.start_ms = nowMs();
    for (int i = 0; i < n; ++i) fleet_.kill9(i);
    hold(hold_ms);
    for (int i = 0; i < n; ++i) fleet_.restart(i);
    heal();
  } else if (kind == "partition") {
    int i = fleet_.options().partition_node;
    f.target = i >= 0 ? fleet_.name(i) : "";
    f.start_ms = nowMs();
    if (!partition_.available || i < 0) {
      f.skipped = partition_.available ? "no node runs under a uid of its own" : partition_.reason;
      record(f);
      return;
    }
    if (!partitionRule(true, partition_.uid)) {
      f.skipped = "iptables refused the rule";
      record(f);
      return;
    }
    partitioned_ = true;
    f.start_ms = nowMs();  // the cut starts once the rule is in
    hold(hold_ms);
    partitioned_ = !partitionRule(false, partition_.uid);
    if (partitioned_) f.target += " (rule not removed)";
    heal();
  }
}

}  // namespace drover::jepsen
