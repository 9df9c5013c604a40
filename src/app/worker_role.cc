#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "app/roles.h"
#include "base/clock.h"
#include "base/ids.h"
#include "tasks/records.h"

namespace drover::app {

namespace {

worker::HandlerRegistry& registry() { return handlerRegistry(); }

// Whether the container engine's program (the first word of its command) can be run.
bool engineInstalled(const std::string& engine) {
  std::istringstream words(engine);
  std::string program;
  words >> program;
  if (program.empty()) return false;
  if (program.find('/') != std::string::npos) return access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (!dir.empty() && access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// The task types this worker publishes for routing (docs/ROUTING.md): what its registry runs,
// less `exec` when the config turns it off and `container` when the engine is not installed, so
// the leader never gives it a task it would only fail.
std::vector<std::string> servedTypes(const NodeConfig& c) {
  std::vector<std::string> out;
  for (auto& t : registry().types()) {
    if (t == "exec" && !c.exec) continue;
    if (t == "container" && !engineInstalled(c.container_engine)) continue;
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

std::string hostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "host";
  std::string out;
  for (char c : std::string(buf)) out.push_back(base::isValidName(std::string(1, c)) ? c : '-');
  return out.empty() ? "host" : out;
}

std::string idForGeneration(const std::string& base_id, uint64_t generation) {
  return generation <= 1 ? base_id : fmt::format("{}-s{}", base_id, generation);
}

WorkerRole::WorkerRole(coord::Coordination& c, const tasks::Layout& layout,
                       const NodeConfig& config, std::string http)
    : coord_(c), layout_(layout), config_(config), http_(std::move(http)), runner_(config.slots) {
  base_id_ = config.id.empty() ? fmt::format("{}-{}-{}", hostName(), getpid(), base::randomHex(3))
                               : config.id;
}

WorkerRole::~WorkerRole() { stop(); }

coord::Status WorkerRole::start() {
  std::string id = idForGeneration(base_id_, coord_.session().generation);
  tasks::WorkerInfo info;
  info.id = id;
  info.host = hostName();
  info.pid = getpid();
  info.slots = config_.slots;
  info.prefetch = config_.prefetch;
  info.labels = config_.labels;
  info.queues = config_.queues;
  info.types = servedTypes(config_);
  info.http = http_;
  info.started_at = base::wallMillis();
  membership_ = std::make_unique<recipes::Membership>(coord_, layout_.workers(), executor_);
  auto joined = membership_->join(
      id, tasks::toJson(info).dump(),
      {coord::CreateOp{layout_.assignmentsOf(id), "", coord::CreateMode::kPersistent, {}}});
  if (!joined) return joined;
  agent_ = std::make_unique<worker::ChunkAgent>(coord_, layout_, id, runner_, registry());
  agent_->start();
  {
    std::lock_guard lock(drain_mu_);
    id_ = id;
  }
  watchDrain(id);
  spdlog::info("worker {} registered with {} slots and prefetch {}", id, config_.slots,
               config_.prefetch);
  return {};
}

void WorkerRole::superviseOnce() {
  if (agent_ && agent_->dead()) {
    spdlog::warn("worker {} lost its session; registering again under a new id", id_);
    agent_->stop();
    agent_.reset();
    membership_.reset();
    retry_attempt_ = 0;
    retry_at_ = {};
  }
  if (agent_ && drain_requested_) finishDrain();
  if (agent_ || drained_) return;
  if (coord_.session().state != coord::SessionState::kConnected) return;
  if (std::chrono::steady_clock::now() < retry_at_) return;
  auto st = start();
  if (st) return;
  agent_.reset();
  membership_.reset();
  auto delay = kStartBackoff.delay(++retry_attempt_);
  retry_at_ = std::chrono::steady_clock::now() + delay;
  spdlog::warn("registering worker {} failed ({}); retrying in {} ms",
               idForGeneration(base_id_, coord_.session().generation), st.error().toString(),
               std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
}

void WorkerRole::stop() {
  drain_requested_ = false;
  if (agent_) agent_->stop();
  agent_.reset();
  if (membership_) (void)membership_->leave();
  membership_.reset();
  runner_.stop();
}

worker::AgentStats WorkerRole::stats() const {
  return agent_ ? agent_->stats() : worker::AgentStats{};
}

// Draining (docs/ROUTING.md): /draining/{id} appeared, so the leader gives this worker nothing
// new. Once it runs nothing and holds no assignment it leaves /workers for good (this process
// keeps its other roles; a restart rejoins as a new worker).
void WorkerRole::watchDrain(const std::string& id) {
  coord_
      .exists(layout_.drain(id),
              [this, id](const coord::WatchEvent&) {
                if (current(id)) watchDrain(id);  // re-arm, and read whether it is there now
              })
      .then([this, id](const coord::Result<std::optional<coord::Stat>>& r) {
        if (r && r->has_value() && current(id)) drain_requested_ = true;
      });
}

bool WorkerRole::current(const std::string& id) {
  std::lock_guard lock(drain_mu_);
  return id == id_;
}

void WorkerRole::finishDrain() {
  if (agent_->stats().running > 0) return;
  auto held = coord_.children(layout_.assignmentsOf(id_), nullptr).get();
  if (!held || !held->empty()) return;
  spdlog::info("worker {} drained: it runs and holds nothing; leaving /workers", id_);
  agent_->stop();
  agent_.reset();
  if (membership_) (void)membership_->leave();
  membership_.reset();
  (void)coord_.remove(layout_.drain(id_), coord::kAnyVersion).get();
  drained_ = true;
}

}  // namespace drover::app
