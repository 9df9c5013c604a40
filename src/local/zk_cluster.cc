#include "local/zk_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "local/ports.h"

namespace drover::local {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kClassPath = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar";
constexpr const char* kStandaloneMain = "org.apache.zookeeper.server.ZooKeeperServerMain";
constexpr const char* kQuorumMain = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
constexpr int kStartAttempts = 3;
constexpr auto kStopGrace = std::chrono::seconds(15);
constexpr auto kPollInterval = milliseconds(50);

// Thrown when a server could not bind one of its ports (taken since freePorts() checked it): the
// factories retry with new ports.
struct BindFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string lastLines(const std::string& text, int lines) {
  size_t pos = text.size();
  for (int n = 0; n <= lines && pos > 0; ++n) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos + 1);
}

std::string parseMode(const std::string& srvr) {
  const auto pos = srvr.find("Mode: ");
  if (pos == std::string::npos) return "";
  const auto end = srvr.find('\n', pos);
  return srvr.substr(pos + 6, end == std::string::npos ? std::string::npos : end - pos - 6);
}

bool isServingMode(const std::string& mode) {
  return mode == "standalone" || mode == "leader" || mode == "follower" || mode == "observer";
}

int millisLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

}  // namespace

std::string fourLetterWord(uint16_t port, std::string_view command, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return "";
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) return "";
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, millisLeft(deadline)) != 1) return "";
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return "";
  }
  size_t sent = 0;
  while (sent < command.size()) {
    const ssize_t n = ::send(fd, command.data() + sent, command.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return "";
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, millisLeft(deadline)) != 1) return "";
  }
  // The server answers and closes the connection.
  std::string answer;
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      answer.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return answer;
    if (errno != EAGAIN && errno != EINTR) return "";
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, millisLeft(deadline)) != 1) return "";
  }
}

std::string uniqueRoot() {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^
                                          (static_cast<uint64_t>(::getpid()) << 32) ^
                                          std::hash<std::thread::id>{}(std::this_thread::get_id()));
  char buf[32];
  std::snprintf(buf, sizeof buf, "/t-%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

ZkCluster::ZkCluster(int n, bool ensemble, Options options)
    : ensemble_(ensemble), options_(std::move(options)) {
  const std::vector<uint16_t> ports = freePorts(ensemble ? 3 * n : n);
  servers_.resize(n);
  for (int i = 0; i < n; ++i) {
    Server& s = servers_[i];
    s.id = i + 1;
    s.dir = makeTempDir("drover-zk-");
    s.client_port = ports[ensemble ? 3 * i : i];
    if (ensemble) {
      s.quorum_port = ports[3 * i + 1];
      s.election_port = ports[3 * i + 2];
    }
  }
  for (int i = 0; i < n; ++i) {
    if (!options_.keep_logs_dir.empty()) std::filesystem::create_directories(logDir(i));
    writeConfig(servers_[i]);
  }
}

ZkCluster::~ZkCluster() {
  for (Server& s : servers_) s.process.reset();  // SIGKILL + reap
  if (!options_.keep_logs_dir.empty()) {
    std::fprintf(stderr, "drover: ZooKeeper logs kept in %s\n", options_.keep_logs_dir.c_str());
  }
  for (const Server& s : servers_) removeTestDir(s.dir, "ZooKeeper server dir");
}

void ZkCluster::writeConfig(const Server& s) const {
  std::filesystem::create_directories(s.dir + "/data");
  std::ofstream cfg(s.dir + "/zoo.cfg");
  // initLimit is in ticks: at least 10 s for a follower to load and sync a large tree (a
  // 1,000,000-task backlog is ~200 MB) whatever the tick; 10 ticks of 250 ms gave it 2.5 s.
  const int init_limit = std::max(10, (10'000 + options_.tick_time_ms - 1) / options_.tick_time_ms);
  cfg << "tickTime=" << options_.tick_time_ms << "\n"
      << "initLimit=" << init_limit << "\n"
      << "syncLimit=5\n"
      << "dataDir=" << s.dir << "/data\n"
      << "clientPort=" << s.client_port << "\n"
      << "clientPortAddress=127.0.0.1\n"
      << "admin.enableServer=false\n"
      << "4lw.commands.whitelist=srvr,ruok,mntr,stat,wchs,wchc\n"
      << "forceSync=" << (options_.force_sync ? "yes" : "no") << "\n";
  if (options_.min_session_timeout_ms) {
    cfg << "minSessionTimeout=" << *options_.min_session_timeout_ms << "\n";
  }
  if (options_.max_session_timeout_ms) {
    cfg << "maxSessionTimeout=" << *options_.max_session_timeout_ms << "\n";
  }
  if (ensemble_) {
    cfg << "quorumListenOnAllIPs=false\n"
        << "standaloneEnabled=false\n";
    for (const Server& peer : servers_) {
      cfg << "server." << peer.id << "=127.0.0.1:" << peer.quorum_port << ":" << peer.election_port
          << "\n";
    }
    std::ofstream(s.dir + "/data/myid") << s.id << "\n";
  }
  for (const std::string& line : options_.extra_config) cfg << line << "\n";
  cfg.flush();
  if (!cfg) throw std::runtime_error("ZkCluster: cannot write " + s.dir + "/zoo.cfg");
  if (!options_.keep_logs_dir.empty()) {
    std::filesystem::copy_file(s.dir + "/zoo.cfg", logDir(s.id - 1) + "/zoo.cfg",
                               std::filesystem::copy_options::overwrite_existing);
  }
}

void ZkCluster::launch(int i) {
  Server& s = server(i);
  const std::string run = std::to_string(s.runs++);
  const std::string logs = logDir(i);
  std::vector<std::string> argv = {"java", "-Xmx" + options_.jvm_heap};
  if (!options_.keep_logs_dir.empty()) {
    argv.push_back("-Xlog:gc*,safepoint:file=" + logs + "/gc." + run +
                   ".log:time,uptime,level,tags:filecount=0");
  }
  for (const std::string& arg : options_.jvm_args) argv.push_back(arg);
  for (std::string arg : {
           "-Dorg.slf4j.simpleLogger.logFile=" + logs + "/zookeeper." + run + ".log",
           "-Dorg.slf4j.simpleLogger.defaultLogLevel=" + options_.log_level,
           std::string("-Dorg.slf4j.simpleLogger.showDateTime=true"),
           std::string("-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS"),
           std::string("-Dzookeeper.jmx.log4j.disable=true"),
           std::string("-cp"),
           std::string(kClassPath),
           std::string(ensemble_ ? kQuorumMain : kStandaloneMain),
           configPath(i),
       }) {
    argv.push_back(std::move(arg));
  }
  s.paused = false;
  s.process = std::make_unique<Process>(ProcessOptions{
      .argv = std::move(argv),
      .env = {},
      .working_dir = s.dir,
      .stdout_path = logs + "/stdout." + run + ".log",
      .stderr_path = logs + "/stderr." + run + ".log",
  });
}

template <class Ready>
void ZkCluster::awaitOrThrow(Ready ready, std::string_view what, int only) {
  const auto start = Clock::now();
  const auto deadline = start + options_.startup_timeout;
  while (true) {
    for (int i = 0; i < size(); ++i) {
      Server& s = servers_[i];
      if ((only >= 0 && i != only) || !s.process || s.process->alive()) continue;
      const std::string tail = logTail(i);
      const std::string message = "ZkCluster: server " + std::to_string(i) + " (" + s.dir +
                                  ") exited with " + s.process->exitStatus()->toString() +
                                  " while waiting for " + std::string(what) + "; log tail:\n" +
                                  tail;
      s.process.reset();
      if (tail.find("Address already in use") != std::string::npos ||
          tail.find("BindException") != std::string::npos) {
        throw BindFailure(message);
      }
      throw std::runtime_error(message);
    }
    if (ready()) {
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      std::fprintf(stderr, "drover: ZooKeeper %.*s after %.2f s (%s)\n",
                   static_cast<int>(what.size()), what.data(), seconds, connectString().c_str());
      return;
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(kPollInterval);
  }
  std::string message = "ZkCluster: timed out after " +
                        std::to_string(options_.startup_timeout.count()) + " ms waiting for " +
                        std::string(what) + ";";
  for (int i = 0; i < size(); ++i) {
    message += "\n--- server " + std::to_string(i) + " (" + servers_[i].dir + ") mode '" + mode(i) +
               "', log tail:\n" + logTail(i);
  }
  throw std::runtime_error(message);
}

std::unique_ptr<ZkCluster> ZkCluster::create(int n, bool ensemble, const Options& options) {
  if (n < 1) throw std::invalid_argument("ZkCluster: need at least one server");
  for (int attempt = 1;; ++attempt) {
    std::unique_ptr<ZkCluster> cluster(new ZkCluster(n, ensemble, options));
    try {
      for (int i = 0; i < n; ++i) cluster->launch(i);
      cluster->awaitOrThrow([&] { return cluster->servingNow(); },
                            ensemble ? std::to_string(n) + "-server ensemble serving"
                                     : std::string("standalone serving"),
                            -1);
      return cluster;
    } catch (const BindFailure& e) {
      if (attempt == kStartAttempts) throw std::runtime_error(e.what());
      std::fprintf(stderr, "drover: a ZooKeeper port was taken; retrying with new ports\n");
    }
  }
}

std::unique_ptr<ZkCluster> ZkCluster::standalone(Options options) {
  return create(1, false, options);
}

std::unique_ptr<ZkCluster> ZkCluster::ensemble(int n, Options options) {
  return create(n, true, options);
}

ZkCluster& ZkCluster::sharedStandalone() {
  // Destroyed by the exit-time destructors (kills the servers); PDEATHSIG covers abnormal exits.
  static const std::unique_ptr<ZkCluster> shared = standalone();
  return *shared;
}

ZkCluster& ZkCluster::sharedEnsemble() {
  static const std::unique_ptr<ZkCluster> shared = ensemble(3);
  return *shared;
}

const ZkCluster::Server& ZkCluster::server(int i) const {
  if (i < 0 || i >= size()) {
    throw std::out_of_range("ZkCluster: no server " + std::to_string(i) + " (size " +
                            std::to_string(size()) + ")");
  }
  return servers_[i];
}

ZkCluster::Server& ZkCluster::server(int i) {
  return const_cast<Server&>(static_cast<const ZkCluster*>(this)->server(i));
}

std::string ZkCluster::connectString() const {
  std::string out;
  for (const Server& s : servers_) {
    if (!out.empty()) out += ",";
    out += "127.0.0.1:" + std::to_string(s.client_port);
  }
  return out;
}

uint16_t ZkCluster::clientPort(int i) const { return server(i).client_port; }

std::string ZkCluster::srvr(int i) const { return fourLetterWord(clientPort(i), "srvr"); }

std::string ZkCluster::mntr(int i) const { return fourLetterWord(clientPort(i), "mntr"); }

std::string ZkCluster::mode(int i, milliseconds timeout) const {
  // A paused server accepts connections (the kernel does) but never answers: skip the wait.
  if (!isRunning(i) || server(i).paused) return "";
  return parseMode(fourLetterWord(clientPort(i), "srvr", timeout));
}

int ZkCluster::leaderIndex() const {
  int leader = -1;
  for (int i = 0; i < size(); ++i) {
    const std::string m = mode(i);
    if (m == "leader" || m == "standalone") {
      if (leader >= 0) return -1;
      leader = i;
    }
  }
  return leader;
}

bool ZkCluster::servingNow() const {
  int considered = 0;
  int leaders = 0;
  for (int i = 0; i < size(); ++i) {
    if (!isRunning(i) || servers_[i].paused) continue;
    ++considered;
    const std::string m = mode(i);
    if (!isServingMode(m)) return false;
    if (m == "leader") ++leaders;
  }
  return considered > 0 && (!ensemble_ || leaders == 1);
}

bool ZkCluster::waitUntilServing(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!servingNow()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
  return true;
}

bool ZkCluster::waitUntilServing(int i, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!isServingMode(mode(i))) {
    if (!isRunning(i) || Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
  return true;
}

void ZkCluster::kill9(int i) {
  Server& s = server(i);
  if (!s.process) return;
  s.process.reset();  // SIGKILL + reap
  s.paused = false;
}

void ZkCluster::stop(int i) {
  Server& s = server(i);
  if (!s.process) return;
  s.process->terminate();
  if (s.paused) s.process->resume();  // A stopped process acts on SIGTERM only once continued.
  s.paused = false;
  s.process->wait(kStopGrace);
  s.process.reset();  // SIGKILLs it if the grace period was not enough
}

void ZkCluster::pause(int i) {
  Server& s = server(i);
  if (s.process && s.process->pause()) s.paused = true;
}

void ZkCluster::resume(int i) {
  Server& s = server(i);
  if (s.process && s.paused && s.process->resume()) s.paused = false;
}

void ZkCluster::restart(int i, bool wait) {
  kill9(i);
  launch(i);
  if (!wait) return;
  awaitOrThrow([&] { return isServingMode(mode(i)); },
               "server " + std::to_string(i) + " serving after restart", i);
}

bool ZkCluster::isRunning(int i) const {
  const Server& s = server(i);
  return s.process != nullptr && s.process->alive();
}

bool ZkCluster::isPaused(int i) const { return isRunning(i) && server(i).paused; }

pid_t ZkCluster::pid(int i) const { return isRunning(i) ? server(i).process->pid() : -1; }

const std::string& ZkCluster::dir(int i) const { return server(i).dir; }

std::string ZkCluster::configPath(int i) const { return dir(i) + "/zoo.cfg"; }

std::string ZkCluster::dataDir(int i) const { return dir(i) + "/data"; }

std::string ZkCluster::logDir(int i) const {
  if (options_.keep_logs_dir.empty()) return dir(i);
  return options_.keep_logs_dir + "/server-" + std::to_string(server(i).id);
}

std::string ZkCluster::logPath(int i) const {
  const Server& s = server(i);
  return logDir(i) + "/zookeeper." + std::to_string(s.runs > 0 ? s.runs - 1 : 0) + ".log";
}

std::string ZkCluster::logTail(int i, int lines) const {
  const Server& s = server(i);
  const std::string run = std::to_string(s.runs > 0 ? s.runs - 1 : 0);
  std::string out = lastLines(readFile(logPath(i)), lines);
  const std::string err = readFile(logDir(i) + "/stderr." + run + ".log");
  if (!err.empty()) out += "--- stderr:\n" + lastLines(err, lines);
  return out;
}

}  // namespace drover::local
