// External-command checkers: long-lived processes speaking JSONL over a socket pair wired to their
// stdin/stdout. Sockets (not pipes) let r1 write with MSG_NOSIGNAL, so a dead child never raises
// SIGPIPE in the trainer. Each process runs in its own process group; a timeout kills the group.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <mutex>

#include "common/error.hpp"
#include "rewards/plugins.hpp"

extern char** environ;

namespace r1::rewards {

std::string request_line(uint64_t id, const Sample& s, const std::string& options_json) {
  boost::json::object o;
  o["id"] = id;
  o["prompt"] = s.prompt;
  o["completion"] = s.completion;
  o["reference"] = s.reference;
  o["metadata"] = s.metadata;
  if (s.completion_tokens)
    o["completion_tokens"] = *s.completion_tokens;
  else
    o["completion_tokens"] = nullptr;
  std::string line = boost::json::serialize(o);
  // Options are already validated JSON text: splice them in without a re-parse per sample.
  line.pop_back();
  line += ",\"options\":" + (options_json.empty() ? std::string("{}") : options_json) + "}\n";
  return line;
}

std::string plugin_host_path() {
  if (const char* e = std::getenv("R1_PLUGIN_HOST")) return e;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto p = self.parent_path() / "r1-plugin-host";
    if (std::filesystem::exists(p)) return p.string();
  }
#ifdef R1_PLUGIN_HOST_BUILD_PATH
  return R1_PLUGIN_HOST_BUILD_PATH;
#else
  return "r1-plugin-host";
#endif
}

namespace {

using Clock = std::chrono::steady_clock;

struct Proc {
  pid_t pid = -1;
  int fd = -1;
  std::string buf;  // bytes read past the last line
  bool alive() const { return pid > 0; }
};

class CommandChecker final : public Checker {
 public:
  CommandChecker(CommandDecl d, std::string options)
      : d_(std::move(d)), options_(std::move(options)), slots_(static_cast<size_t>(d_.processes)) {
    // Start one process now so a wrong command fails at load time, not on the first sample.
    std::string err;
    if (!spawn(slots_[0].proc, err)) throw ConfigError("reward command '" + d_.name + "': " + err);
  }
  ~CommandChecker() override {
    for (auto& s : slots_) stop(s.proc, /*graceful=*/true);
  }

  CheckResult check(const Sample& s, const Deadline& dl) const override {
    // Take a free slot, else wait on one in turn.
    size_t start = next_.fetch_add(1) % slots_.size();
    std::unique_lock<std::mutex> lk;
    Slot* slot = nullptr;
    for (size_t k = 0; k < slots_.size() && !slot; ++k) {
      Slot& c = slots_[(start + k) % slots_.size()];
      std::unique_lock<std::mutex> t(c.m, std::try_to_lock);
      if (t.owns_lock()) {
        lk = std::move(t);
        slot = &c;
      }
    }
    if (!slot) {
      slot = &slots_[start];
      lk = std::unique_lock<std::mutex>(slot->m);
    }
    Proc& p = slot->proc;
    std::string err;
    if (!p.alive() && !spawn(p, err)) return CheckResult::failure(Status::error, err);
    auto end = std::min(dl.end(), Clock::now() + std::chrono::milliseconds(d_.timeout_ms));
    uint64_t id = ++ids_;
    std::string req = request_line(id, s, options_);
    if (!write_all(p, req, end)) {
      bool timed_out = Clock::now() >= end;
      std::string why = describe_exit(p);
      return CheckResult::failure(timed_out ? Status::timeout : Status::error,
                                  timed_out ? "timeout" : "command '" + d_.name + "' died: " + why);
    }
    std::string line;
    int rc = read_line(p, line, end);
    if (rc == 0) {
      stop(p, false);
      return CheckResult::failure(Status::timeout, "timeout");
    }
    if (rc < 0) return CheckResult::failure(Status::error, "command '" + d_.name + "' died: " + describe_exit(p));
    return parse_response(line, id, p);
  }

 private:
  struct Slot {
    std::mutex m;
    Proc proc;
  };
  CommandDecl d_;
  std::string options_;
  mutable std::vector<Slot> slots_;
  mutable std::atomic<uint64_t> next_{0}, ids_{0};

  bool spawn(Proc& p, std::string& err) const {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      err = std::string("socketpair: ") + std::strerror(errno);
      return false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
    // Own process group (killed as a whole on timeout) and default signal dispositions.
    sigset_t def;
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
    std::vector<char*> argv;
    for (const auto& a : d_.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, argv[0], &fa, &at, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(sv[1]);
    if (rc != 0) {
      close(sv[0]);
      err = "cannot start '" + d_.command[0] + "': " + std::strerror(rc);
      return false;
    }
    p.pid = pid;
    p.fd = sv[0];
    p.buf.clear();
    return true;
  }

  static std::string describe_exit(Proc& p) {
    if (!p.alive()) return "not running";
    int status = 0;
    std::string why = "closed its output";
    // Give a dying child a moment to be reaped so we can report how it ended.
    for (int i = 0; i < 50; ++i) {
      pid_t r = waitpid(p.pid, &status, WNOHANG);
      if (r == p.pid) {
        if (WIFSIGNALED(status))
          why = "killed by signal " + std::to_string(WTERMSIG(status));
        else if (WIFEXITED(status))
          why = "exited with status " + std::to_string(WEXITSTATUS(status));
        close(p.fd);
        p = Proc{};
        return why + "; it restarts on the next sample";
      }
      usleep(2000);
    }
    kill(-p.pid, SIGKILL);
    waitpid(p.pid, &status, 0);
    close(p.fd);
    p = Proc{};
    return why + "; it restarts on the next sample";
  }

  static void stop(Proc& p, bool graceful) {
    if (!p.alive()) return;
    if (graceful) {
      shutdown(p.fd, SHUT_WR);  // EOF on the child's stdin: a well-behaved child exits
      for (int i = 0; i < 100; ++i) {
        if (waitpid(p.pid, nullptr, WNOHANG) == p.pid) {
          close(p.fd);
          p = Proc{};
          return;
        }
        usleep(2000);
      }
    }
    kill(-p.pid, SIGKILL);
    waitpid(p.pid, nullptr, 0);
    close(p.fd);
    p = Proc{};
  }

  static int ms_left(Clock::time_point end) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    return ms < 0 ? 0 : static_cast<int>(std::min<int64_t>(ms, 1 << 30));
  }

  static bool write_all(Proc& p, const std::string& data, Clock::time_point end) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(p.fd, data.data() + off, data.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        pollfd pf{p.fd, POLLOUT, 0};
        int left = ms_left(end);
        if (left == 0) return false;
        poll(&pf, 1, left);
        continue;
      }
      return false;  // EPIPE / ECONNRESET: the child is gone
    }
    return true;
  }

  // 1: got a line; 0: timeout; -1: the child closed the socket.
  static int read_line(Proc& p, std::string& line, Clock::time_point end) {
    constexpr size_t kMaxLine = 16u << 20;
    while (true) {
      size_t nl = p.buf.find('\n');
      if (nl != std::string::npos) {
        line = p.buf.substr(0, nl);
        p.buf.erase(0, nl + 1);
        return 1;
      }
      if (p.buf.size() > kMaxLine) return -1;
      pollfd pf{p.fd, POLLIN, 0};
      int left = ms_left(end);
      if (left == 0) return 0;
      int r = poll(&pf, 1, left);
      if (r == 0) return 0;
      if (r < 0) {
        if (errno == EINTR) continue;
        return -1;
      }
      char tmp[65536];
      ssize_t n = recv(p.fd, tmp, sizeof tmp, MSG_DONTWAIT);
      if (n > 0)
        p.buf.append(tmp, static_cast<size_t>(n));
      else if (n == 0)
        return -1;
      else if (errno != EAGAIN && errno != EINTR)
        return -1;
    }
  }

  CheckResult parse_response(const std::string& line, uint64_t id, Proc& p) const {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(line, ec);
    auto bad = [&](const std::string& why) {
      // Out of sync or garbage: restart so the next sample starts clean.
      stop(p, false);
      return CheckResult::failure(Status::error, "command '" + d_.name + "' " + why);
    };
    if (ec || !v.is_object()) return bad("answered with a line that is not a JSON object: " + line.substr(0, 200));
    const auto& o = v.as_object();
    if (auto* i = o.if_contains("id"); i && i->is_number() && i->to_number<uint64_t>() != id)
      return bad("answered id " + boost::json::serialize(*i) + " to request " + std::to_string(id));
    if (auto* e = o.if_contains("error"); e && !e->is_null())
      return CheckResult::failure(Status::error,
                                  e->is_string() ? std::string(e->as_string()) : boost::json::serialize(*e));
    CheckResult r;
    auto* sc = o.if_contains("score");
    if (!sc || !sc->is_number()) return bad("answered without a numeric \"score\"");
    r.score = sc->to_number<double>();
    if (auto* parts = o.if_contains("parts"); parts && parts->is_object())
      for (const auto& [k, pv] : parts->as_object())
        if (pv.is_number()) r.parts.emplace_back(std::string(k), pv.to_number<double>());
    if (auto* rs = o.if_contains("reason"); rs && rs->is_string()) r.reason = std::string(rs->as_string());
    return r;
  }
};

}  // namespace

CheckerPtr make_command_checker(const CommandDecl& decl, const std::string& options_json) {
  if (decl.command.empty()) throw ConfigError("reward command '" + decl.name + "': command is empty");
  return std::make_shared<CommandChecker>(decl, options_json);
}

}  // namespace r1::rewards
