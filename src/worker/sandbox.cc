#include "worker/sandbox.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/ids.h"

namespace drover::worker {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";
constexpr const char* kTaskPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr int64_t kCpuPeriodUs = 100000;

std::optional<std::string> writeFile(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fmt::format("{}: {}", path, std::strerror(errno));
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return fmt::format("{} <- {}: {}", path, value, std::strerror(err));
  }
  return std::nullopt;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The number after `key` in a flat-keyed file ("oom_kill 3"); 0 when absent.
int64_t keyedValue(const std::string& path, std::string_view key) {
  std::istringstream in(readFile(path));
  std::string k;
  int64_t v = 0;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return 0;
}

// controller -> the node's own cgroup path, from /proc/self/cgroup ("" for v2's unified line).
std::map<std::string, std::string> ownCgroups() {
  std::map<std::string, std::string> out;
  std::istringstream in(readFile("/proc/self/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':');
    auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (controllers.empty()) {
      out[""] = path;
      continue;
    }
    std::istringstream cs(controllers);
    std::string c;
    while (std::getline(cs, c, ',')) out[c] = path;
  }
  return out;
}

std::string joinPath(const std::string& a, const std::string& b) {
  if (b.empty() || b == "/") return a;
  return a + (b.front() == '/' ? "" : "/") + b;
}

// Whether this process may make task cgroups below `parent` (it may exist already, made by
// another user): makes and removes a probe folder. "" when it can, else why not.
std::string probeParent(const std::string& parent) {
  if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
    return fmt::format("cannot make {}: {}", parent, std::strerror(errno));
  }
  std::string probe = fmt::format("{}/probe-{}", parent, ::getpid());
  if (::mkdir(probe.c_str(), 0755) != 0 && errno != EEXIST) {
    return fmt::format("cannot make cgroups below {}: {}", parent, std::strerror(errno));
  }
  ::rmdir(probe.c_str());
  return "";
}

CgroupSystem detectV2(const std::map<std::string, std::string>& own) {
  auto it = own.find("");
  if (it == own.end()) return CgroupSystem(CgroupMode::kNone, {}, "no cgroup v2 entry");
  std::string base = joinPath(kCgroupRoot, it->second);
  std::string available = readFile(base + "/cgroup.controllers");
  for (const char* c : {"memory", "pids"}) {
    if (available.find(c) == std::string::npos) {
      return CgroupSystem(
          CgroupMode::kNone, {},
          fmt::format("cgroup v2: the {} controller is not delegated to {}", c, base));
    }
  }
  std::string enable = "+memory +pids";
  if (available.find("cpu") != std::string::npos) enable += " +cpu";
  // v2 lets a cgroup give controllers to children only while it holds no process itself: move
  // the node into a leaf of its own first (what a delegated service is expected to do).
  if (writeFile(base + "/cgroup.subtree_control", enable)) {
    std::string leaf = base + "/node";
    ::mkdir(leaf.c_str(), 0755);
    if (auto err = writeFile(leaf + "/cgroup.procs", std::to_string(::getpid()))) {
      return CgroupSystem(CgroupMode::kNone, {}, "cgroup v2: cannot move the node: " + *err);
    }
    if (auto err = writeFile(base + "/cgroup.subtree_control", enable)) {
      return CgroupSystem(CgroupMode::kNone, {}, "cgroup v2: " + *err);
    }
  }
  std::string parent = base + "/drover";
  if (auto why = probeParent(parent); !why.empty()) {
    return CgroupSystem(CgroupMode::kNone, {}, "cgroup v2: " + why);
  }
  if (auto err = writeFile(parent + "/cgroup.subtree_control", enable)) {
    return CgroupSystem(CgroupMode::kNone, {}, "cgroup v2: " + *err);
  }
  return CgroupSystem(CgroupMode::kV2, {{"", parent}});
}

CgroupSystem detectV1(const std::map<std::string, std::string>& own) {
  std::map<std::string, std::string> parents;
  for (const char* c : {"memory", "pids", "cpu"}) {
    std::string mount = fmt::format("{}/{}", kCgroupRoot, c);
    auto it = own.find(c);
    if (it == own.end() || !fs::is_directory(mount)) {
      if (std::string(c) == "cpu") continue;  // CPU limits are optional; memory and pids are not
      return CgroupSystem(CgroupMode::kNone, {},
                          fmt::format("cgroup v1: the {} controller is not mounted", c));
    }
    std::string parent = joinPath(mount, it->second) + "/drover";
    if (auto why = probeParent(parent); !why.empty()) {
      if (std::string(c) == "cpu") continue;
      return CgroupSystem(CgroupMode::kNone, {}, "cgroup v1: " + why);
    }
    parents[c] = parent;
  }
  return CgroupSystem(CgroupMode::kV1, std::move(parents));
}

}  // namespace

// ---- TaskCgroup ------------------------------------------------------------------------------

TaskCgroup::TaskCgroup(CgroupMode mode, std::vector<std::string> dirs)
    : mode_(mode), dirs_(std::move(dirs)) {
  for (const auto& d : dirs_) {
    int fd = ::open((d + "/cgroup.procs").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) proc_fds_.push_back(fd);
  }
}

TaskCgroup::~TaskCgroup() {
  for (int fd : proc_fds_) ::close(fd);
  killAll();
  for (const auto& d : dirs_) {
    if (::rmdir(d.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("cannot remove the task cgroup {}: {}", d, std::strerror(errno));
    }
  }
}

std::vector<pid_t> TaskCgroup::pids() const {
  std::vector<pid_t> out;
  for (const auto& d : dirs_) {
    std::istringstream in(readFile(d + "/cgroup.procs"));
    pid_t p;
    while (in >> p) out.push_back(p);
  }
  return out;
}

bool TaskCgroup::oomKilled() const {
  for (const auto& d : dirs_) {
    std::string file = mode_ == CgroupMode::kV2 ? "/memory.events" : "/memory.oom_control";
    if (keyedValue(d + file, "oom_kill") > 0) return true;
  }
  return false;
}

bool TaskCgroup::pidsLimitHit() const {
  for (const auto& d : dirs_) {
    if (keyedValue(d + "/pids.events", "max") > 0) return true;
  }
  return false;
}

bool TaskCgroup::killAll() {
  // A fork bomb may fork between our reading and our killing: read and kill until empty. v2's
  // cgroup.kill does it in one step where the kernel has it.
  if (mode_ == CgroupMode::kV2) {
    for (const auto& d : dirs_) {
      if (fs::exists(d + "/cgroup.kill")) (void)writeFile(d + "/cgroup.kill", "1");
    }
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (true) {
    auto left = pids();
    if (left.empty()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    for (pid_t p : left) ::kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// ---- CgroupSystem ----------------------------------------------------------------------------

CgroupSystem::CgroupSystem(CgroupMode mode, std::map<std::string, std::string> parents,
                           std::string why_not)
    : mode_(mode), parents_(std::move(parents)), why_not_(std::move(why_not)) {}

CgroupSystem CgroupSystem::detect() {
  struct statfs sf;
  if (::statfs(kCgroupRoot, &sf) != 0) {
    return CgroupSystem(CgroupMode::kNone, {},
                        fmt::format("{}: {}", kCgroupRoot, std::strerror(errno)));
  }
  auto own = ownCgroups();
  if (static_cast<unsigned long>(sf.f_type) == CGROUP2_SUPER_MAGIC) return detectV2(own);
  return detectV1(own);
}

std::string CgroupSystem::describe() const {
  if (mode_ == CgroupMode::kNone) return "none (" + why_not_ + ")";
  std::vector<std::string> parts;
  for (const auto& [c, p] : parents_) parts.push_back(c.empty() ? p : c + "=" + p);
  return fmt::format("cgroup {} ({})", mode_ == CgroupMode::kV1 ? "v1" : "v2",
                     fmt::join(parts, ", "));
}

tl::expected<std::unique_ptr<TaskCgroup>, std::string> CgroupSystem::create(
    const std::string& name, const Resources& limits) const {
  if (mode_ == CgroupMode::kNone) return tl::unexpected("no cgroups: " + why_not_);
  std::vector<std::string> dirs;
  for (const auto& [controller, parent] : parents_) {
    std::string dir = parent + "/" + name;
    if (::mkdir(dir.c_str(), 0755) != 0) {
      std::string err = fmt::format("cannot make {}: {}", dir, std::strerror(errno));
      for (const auto& d : dirs) ::rmdir(d.c_str());
      return tl::unexpected(err);
    }
    dirs.push_back(dir);
  }
  // Every folder made is in `cg` from here on: any error below removes them.
  auto cg = std::make_unique<TaskCgroup>(mode_, dirs);
  const auto dirOf = [&](const std::string& controller) -> std::string {
    if (mode_ == CgroupMode::kV2) return dirs.front();
    auto it = parents_.find(controller);
    return it == parents_.end() ? "" : it->second + "/" + name;
  };
  std::optional<std::string> err;
  const auto set = [&](const std::string& controller, const std::string& file,
                       const std::string& value) {
    std::string dir = dirOf(controller);
    if (err || dir.empty()) return;
    err = writeFile(dir + "/" + file, value);
  };
  if (limits.memory_mb > 0) {
    std::string bytes = std::to_string(limits.memory_mb * 1024 * 1024);
    if (mode_ == CgroupMode::kV2) {
      set("memory", "memory.max", bytes);
      if (fs::exists(dirOf("memory") + "/memory.swap.max")) set("memory", "memory.swap.max", "0");
    } else {
      set("memory", "memory.limit_in_bytes", bytes);
      // With swap accounting, the same bound on memory + swap, so swapping cannot escape it.
      if (fs::exists(dirOf("memory") + "/memory.memsw.limit_in_bytes")) {
        set("memory", "memory.memsw.limit_in_bytes", bytes);
      }
    }
  }
  if (limits.pids > 0) set("pids", "pids.max", std::to_string(limits.pids));
  if (limits.cpus > 0) {
    auto quota = static_cast<int64_t>(std::llround(limits.cpus * kCpuPeriodUs));
    if (dirOf("cpu").empty()) {
      err = "no cpu controller for a CPU limit";
    } else if (mode_ == CgroupMode::kV2) {
      set("cpu", "cpu.max", fmt::format("{} {}", quota, kCpuPeriodUs));
    } else {
      set("cpu", "cpu.cfs_period_us", std::to_string(kCpuPeriodUs));
      set("cpu", "cpu.cfs_quota_us", std::to_string(quota));
    }
  }
  if (err) return tl::unexpected(*err);
  if (cg->procFds().size() != dirs.size()) {
    return tl::unexpected(fmt::format("cannot open cgroup.procs below {}", dirs.front()));
  }
  return cg;
}

// ---- ExecIsolation ---------------------------------------------------------------------------

PreparedExec::PreparedExec(PreparedExec&& o) noexcept
    : argv(std::move(o.argv)),
      cwd(std::move(o.cwd)),
      setup(std::move(o.setup)),
      limits(o.limits),
      cgroup(std::move(o.cgroup)),
      work_dir(std::exchange(o.work_dir, {})) {}

PreparedExec::~PreparedExec() {
  cgroup.reset();  // kills what is left first, so nothing writes into the work dir any more
  if (!work_dir.empty()) {
    std::error_code ec;
    fs::remove_all(work_dir, ec);
    if (ec) spdlog::warn("cannot remove the task work dir {}: {}", work_dir, ec.message());
  }
}

ExecIsolation::ExecIsolation(ExecPolicy policy, CgroupSystem cgroups)
    : policy_(std::move(policy)), cgroups_(std::move(cgroups)) {}

std::shared_ptr<ExecIsolation> ExecIsolation::forThisMachine(ExecPolicy policy) {
  auto iso = std::make_shared<ExecIsolation>(std::move(policy), CgroupSystem::detect());
  const ExecPolicy& p = iso->policy();
  if (!p.enabled) {
    spdlog::info("exec tasks are disabled on this node");
    return iso;
  }
  if (!p.sandbox) {
    spdlog::warn(
        "exec sandbox is OFF (exec_sandbox: false): tasks run as this node's user, "
        "seeing its files and network");
  } else if (::access(p.bwrap.c_str(), X_OK) != 0) {
    spdlog::error(
        "exec sandbox: {} is missing ({}); exec tasks will fail until bubblewrap is "
        "installed (or exec_sandbox is turned off, which is unsafe)",
        p.bwrap, std::strerror(errno));
  } else {
    spdlog::info("exec sandbox: bubblewrap at {}, tasks run as uid {}", p.bwrap,
                 ::geteuid() == 0 ? p.uid : ::geteuid());
  }
  if (iso->cgroups().mode() == CgroupMode::kNone) {
    spdlog::warn(
        "exec limits: no usable cgroups ({}); falling back to rlimits: memory bounds "
        "address space, processes are counted per uid, and CPU is not limited",
        iso->cgroups().whyNot());
  } else {
    spdlog::info("exec limits: {}", iso->cgroups().describe());
  }
  return iso;
}

std::vector<std::string> taskEnvironment(const std::map<std::string, std::string>& payload_env,
                                         const TaskIdentity& who, const std::string& home) {
  std::map<std::string, std::string> env = {
      {"PATH", kTaskPath}, {"LANG", "C.UTF-8"}, {"HOME", home}, {"TMPDIR", "/tmp"}};
  for (const auto& [k, v] : payload_env) env[k] = v;
  env["DROVER_TASK_ID"] = who.id;
  env["DROVER_ATTEMPT"] = std::to_string(who.attempt);
  env["DROVER_WORKER"] = who.worker;
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

std::string findProgram(const std::string& name, const std::string& path) {
  if (name.find('/') != std::string::npos) return name;
  std::istringstream in(path);
  std::string dir;
  while (std::getline(in, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return "";
}

std::string mebibytes(int64_t mb) {
  if (mb >= 1024 && mb % 1024 == 0) return fmt::format("{} GiB", mb / 1024);
  return fmt::format("{} MiB", mb);
}

tl::expected<PreparedExec, std::string> ExecIsolation::prepare(const tasks::ExecRequest& req,
                                                               const TaskIdentity& who) const {
  const ExecPolicy& p = policy_;
  if (!p.enabled)
    return tl::unexpected(std::string("exec tasks are disabled on this worker (exec: false)"));
  if (req.argv.empty() || req.argv[0].empty()) return tl::unexpected(std::string("argv is empty"));

  std::vector<std::string> argv = req.argv;
  if (!p.allow.empty()) {
    // Resolved with the node's fixed PATH, and the resolved path is what runs: a task's own PATH
    // cannot change which program an allow-list entry names.
    if (argv[0].find('/') != std::string::npos && argv[0][0] != '/') {
      return tl::unexpected(fmt::format(
          "program '{}' is not allowed: with exec_allow set, name a program or an absolute path",
          argv[0]));
    }
    std::string found = findProgram(argv[0], kTaskPath);
    std::error_code ec;
    std::string real = found.empty() ? "" : fs::canonical(found, ec).string();
    bool ok = false;
    for (const auto& a : p.allow) {
      std::error_code ec2;
      auto allowed = fs::canonical(a, ec2);
      if (!real.empty() && !ec2 && allowed.string() == real) ok = true;
    }
    if (!ok) {
      return tl::unexpected(
          fmt::format("program '{}' is not allowed on this worker (exec_allow: {})", argv[0],
                      fmt::join(p.allow, ", ")));
    }
    argv[0] = found;
  }

  PreparedExec out;
  Resources& lim = out.limits;
  lim.memory_mb = req.resources.memory_mb > 0 ? req.resources.memory_mb : p.defaults.memory_mb;
  lim.cpus = req.resources.cpus > 0 ? req.resources.cpus : p.defaults.cpus;
  lim.pids = req.resources.pids > 0 ? req.resources.pids : p.defaults.pids;
  std::string token = fmt::format("{}-{}-{}", who.id, who.attempt, base::randomHex(3));

  if (lim.memory_mb > 0 || lim.cpus > 0 || lim.pids > 0) {
    if (cgroups_.mode() != CgroupMode::kNone) {
      auto cg = cgroups_.create(token, lim);
      if (!cg) return tl::unexpected("cannot set the task's limits: " + cg.error());
      out.cgroup = std::move(*cg);
      out.setup.cgroup_procs = out.cgroup->procFds();
    } else {
      // The fallback (logged at startup): address space for memory, processes of the task's uid.
      if (lim.memory_mb > 0) {
        auto bytes = static_cast<rlim_t>(lim.memory_mb) * 1024 * 1024;
        out.setup.rlimits.push_back({RLIMIT_AS, rlimit{bytes, bytes}});
      }
      if (lim.pids > 0) {
        auto n = static_cast<rlim_t>(lim.pids);
        out.setup.rlimits.push_back({RLIMIT_NPROC, rlimit{n, n}});
      }
    }
  }
  out.setup.no_new_privs = true;

  if (!p.sandbox) {
    std::string home = req.cwd.empty() ? fs::current_path().string() : req.cwd;
    out.setup.env = taskEnvironment(req.env, who, home);
    out.argv = std::move(argv);
    out.cwd = req.cwd;
    return out;
  }

  if (::access(p.bwrap.c_str(), X_OK) != 0) {
    return tl::unexpected(
        fmt::format("the exec sandbox needs bubblewrap at {} ({}); install the bubblewrap package",
                    p.bwrap, std::strerror(errno)));
  }
  bool as_root = ::geteuid() == 0;
  uid_t uid = as_root ? p.uid : ::geteuid();
  gid_t gid = as_root ? p.gid : ::getegid();

  // The private work dir: the task's cwd and HOME, writable by it alone, removed after the run.
  // The root is this node user's own: one left by another user (or planted in /tmp) is refused.
  std::string root =
      p.work_root.empty() ? fmt::format("/tmp/drover-exec-{}", ::geteuid()) : p.work_root;
  std::error_code ec;
  if (::mkdir(root.c_str(), 0711) != 0 && errno != EEXIST) {
    return tl::unexpected(fmt::format("cannot make {}: {}", root, std::strerror(errno)));
  }
  struct stat rst;
  if (::lstat(root.c_str(), &rst) != 0 || !S_ISDIR(rst.st_mode) || rst.st_uid != ::geteuid() ||
      (rst.st_mode & 022) != 0) {
    return tl::unexpected(
        fmt::format("the exec work dir {} must be a folder of uid {}, writable by it alone", root,
                    ::geteuid()));
  }
  ::chmod(root.c_str(), 0711);
  out.work_dir = root + "/" + token;
  if (::mkdir(out.work_dir.c_str(), 0700) != 0) {
    std::string err = fmt::format("cannot make {}: {}", out.work_dir, std::strerror(errno));
    out.work_dir.clear();
    return tl::unexpected(err);
  }
  if (as_root && ::chown(out.work_dir.c_str(), uid, gid) != 0) {
    return tl::unexpected(
        fmt::format("cannot give {} to uid {}: {}", out.work_dir, uid, std::strerror(errno)));
  }
  if (as_root) out.setup.user = std::make_pair(uid, gid);

  std::vector<std::string>& a = out.argv;
  a = {p.bwrap,         "--die-with-parent", "--new-session", "--unshare-user",
       "--unshare-pid", "--unshare-ipc",     "--unshare-uts", "--unshare-cgroup-try",
       "--hostname",    "drover-task",       "--uid",         std::to_string(uid),
       "--gid",         std::to_string(gid), "--cap-drop",    "ALL"};
  if (!req.network) a.push_back("--unshare-net");
  for (const auto& path : p.system_paths) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      std::error_code lec;
      auto target = fs::read_symlink(path, lec);
      if (!lec) a.insert(a.end(), {"--symlink", target.string(), path});
    } else if (S_ISDIR(st.st_mode)) {
      a.insert(a.end(), {"--ro-bind", path, path});
    }
  }
  a.insert(a.end(), {"--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"});
  a.insert(a.end(), {"--bind", out.work_dir, out.work_dir});
  std::string cwd = req.cwd.empty()     ? out.work_dir
                    : req.cwd[0] == '/' ? req.cwd
                                        : out.work_dir + "/" + req.cwd;
  // The root bwrap builds is a tmpfs: made read-only once every mount is in place, so that the
  // work dir and the private /tmp are the only places a task writes.
  a.insert(a.end(), {"--remount-ro", "/", "--chdir", cwd, "--"});
  a.insert(a.end(), argv.begin(), argv.end());
  out.setup.env = taskEnvironment(req.env, who, out.work_dir);
  return out;
}

}  // namespace drover::worker
