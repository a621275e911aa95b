// The sandbox runner: fork, set limits and identity, exec bwrap; then, on the host, feed nothing
// and read everything (stdout, stderr, the fd-3 channel) under caps and a wall-clock deadline, kill
// the tree on any breach and reap it before returning.
#include "rewards/sandbox/sandbox.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/error.hpp"

namespace r1::sandbox {

const char* ending_name(Ending e) {
  switch (e) {
    case Ending::exited: return "exited";
    case Ending::timeout: return "timeout";
    case Ending::output_limit: return "output_limit";
    case Ending::spawn_failed: return "spawn_failed";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kChannelCap = 1 << 20;
constexpr int kChannelFd = 3, kSecretFd = 4, kExecErrFd = 5, kFirstFileFd = 10;

// An fd closed on scope exit.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd = o.fd;
    o.fd = -1;
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// A sealed, read-only-from-now-on memory file holding `data` (offset 0).
Fd sealed_memfd(const char* name, const std::string& data) {
  Fd f(static_cast<int>(::syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (f.fd < 0) fail("sandbox: memfd_create failed: {}", std::strerror(errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(f.fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("sandbox: writing memfd {} failed: {}", name, std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  ::fcntl(f.fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  ::lseek(f.fd, 0, SEEK_SET);
  return f;
}

struct Pipe {
  Fd r, w;
};
Pipe make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail("sandbox: pipe2 failed: {}", std::strerror(errno));
  ::fcntl(p[0], F_SETFL, ::fcntl(p[0], F_GETFL) | O_NONBLOCK);
  return {Fd(p[0]), Fd(p[1])};
}

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

void kill_tree(pid_t pid) {
  // The leader (outer bwrap) leads its own process group; the sandbox's pid-namespace init has
  // PDEATHSIG=SIGKILL tied to it, so its death takes every process in the namespace along.
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
}

// Takes the first free automatic uid range: an exclusive, non-blocking flock on
// lock_dir/uids-<base>.lock, held through the returned descriptor (close-on-exec, so nothing the
// sandbox runs inherits it). The file names the holder's pid for whoever wonders who has it.
std::pair<int64_t, int> lock_uid_range(const std::string& lock_dir) {
  std::error_code ec;
  std::filesystem::create_directories(lock_dir, ec);
  for (int64_t k = 0; k < kAutoRanges; ++k) {
    const int64_t base = kAutoUidBase + k * kUidRange;
    const std::string path = lock_dir + "/uids-" + std::to_string(base) + ".lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      throw ConfigError("sandbox.lock_dir: cannot create " + path + ": " + std::strerror(errno) +
                        " (set [sandbox] lock_dir to a writable folder, or uid_base by hand)");
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      const std::string pid = std::to_string(::getpid()) + "\n";  // who holds it (best effort)
      if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, pid.data(), pid.size(), 0);
      return {base, fd};
    }
    ::close(fd);
  }
  throw Error("sandbox: all " + std::to_string(kAutoRanges) + " uid ranges under " + lock_dir +
              " are held by running r1 processes; set [sandbox] uid_base by hand");
}

}  // namespace

Sandbox::Sandbox(SandboxOptions o) : o_(std::move(o)) {
  int n = static_cast<int>(o_.parallelism > 0 ? o_.parallelism : std::max(1u, std::thread::hardware_concurrency()));
  free_.reserve(static_cast<size_t>(n));
  for (int i = n - 1; i >= 0; --i) free_.push_back(i);
  as_root_ = ::geteuid() == 0;
  uid_base_ = o_.uid_base;
  std::error_code ec;
  auto real = std::filesystem::canonical(o_.python, ec);
  python_real_ = ec ? o_.python : real.string();
  if (!std::filesystem::exists(o_.bwrap))
    throw ConfigError("sandbox.bwrap: " + o_.bwrap + " does not exist (install the Debian package bubblewrap)");
  if (ec) throw ConfigError("sandbox.python: " + o_.python + " does not exist (install the Debian package python3)");
  if (as_root_ && uid_base_ == 0)
    std::tie(uid_base_, range_lock_) = lock_uid_range(o_.lock_dir);  // last: nothing throws after it
}

Sandbox::~Sandbox() {
  if (range_lock_ >= 0) ::close(range_lock_);  // releases the uid range
}

SandboxStats Sandbox::stats() const {
  return {runs_.load(), timeouts_.load(), output_limits_.load(), spawn_failures_.load(), cpu_limits_.load()};
}

std::vector<uint32_t> Sandbox::slot_uids() const {
  std::vector<uint32_t> u;
  if (!as_root_) return u;
  for (int i = 0; i < slots(); ++i) u.push_back(static_cast<uint32_t>(uid_base_ + i));
  return u;
}

int Sandbox::acquire() {
  std::unique_lock lk(m_);
  cv_.wait(lk, [&] { return !free_.empty(); });
  int s = free_.back();
  free_.pop_back();
  return s;
}

void Sandbox::release(int slot) {
  {
    std::lock_guard lk(m_);
    free_.push_back(slot);
  }
  cv_.notify_one();
}

RunResult Sandbox::run(const RunSpec& spec) {
  int slot = acquire();
  struct Release {
    Sandbox* s;
    int slot;
    ~Release() { s->release(slot); }
  } rel{this, slot};
  runs_++;
  RunResult r = run_in_slot(spec, slot);
  if (r.ending == Ending::timeout) timeouts_++;
  if (r.ending == Ending::output_limit) output_limits_++;
  if (r.ending == Ending::spawn_failed) spawn_failures_++;
  if (r.cpu_limit) cpu_limits_++;
  return r;
}

RunResult Sandbox::run_in_slot(const RunSpec& spec, int slot) {
  RunResult res;
  const int64_t wall_ms = spec.limits.wall_ms > 0 ? spec.limits.wall_ms : o_.wall_timeout_ms;
  const int64_t cpu_s = spec.limits.cpu_seconds > 0 ? spec.limits.cpu_seconds : o_.cpu_seconds;
  const int64_t mem_mb = spec.limits.memory_mb > 0 ? spec.limits.memory_mb : o_.memory_mb;
  const size_t out_cap = static_cast<size_t>(o_.output_limit_kb) * 1024;

  // ---- Everything the child needs, prepared before fork (the child may only make syscalls). ----
  Fd stdin_fd = sealed_memfd("r1-stdin", spec.stdin_data);
  Fd secret_fd;
  if (!spec.secret.empty()) secret_fd = sealed_memfd("r1-secret", spec.secret);
  std::vector<Fd> file_fds;
  for (const auto& [name, content] : spec.files) file_fds.push_back(sealed_memfd("r1-file", content));
  Pipe out = make_pipe(), err = make_pipe(), chan = make_pipe();
  int ep[2];  // close-on-exec: EOF means bwrap was exec'd, a byte means our child failed first
  if (::pipe2(ep, O_CLOEXEC) != 0) fail("sandbox: pipe2 failed: {}", std::strerror(errno));
  Fd exec_r(ep[0]), exec_w(ep[1]);

  std::vector<std::string> argv{o_.bwrap,
                                "--unshare-user",
                                "--unshare-pid",
                                "--unshare-net",
                                "--unshare-ipc",
                                "--unshare-uts",
                                "--unshare-cgroup-try",
                                "--disable-userns",
                                "--die-with-parent",
                                "--new-session",
                                "--uid",
                                "1000",
                                "--gid",
                                "1000",
                                "--hostname",
                                "sandbox",
                                "--clearenv",
                                "--setenv",
                                "PATH",
                                "/usr/bin:/bin",
                                "--setenv",
                                "HOME",
                                "/tmp",
                                "--setenv",
                                "TMPDIR",
                                "/tmp",
                                "--setenv",
                                "LANG",
                                "C.UTF-8"};
  auto add = [&](std::initializer_list<std::string> xs) { argv.insert(argv.end(), xs); };
  for (const auto& b : o_.ro_binds) add({"--ro-bind-try", b, b});
  add({"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin"});
  add({"--dev", "/dev", "--size", std::to_string(o_.tmp_size_mb << 20), "--tmpfs", "/tmp"});
  for (size_t i = 0; i < spec.files.size(); ++i)
    add({"--ro-bind-data", std::to_string(kFirstFileFd + static_cast<int>(i)), "/sandbox/" + spec.files[i].first});
  add({"--remount-ro", "/", "--chdir", "/tmp", "--", python_real_});
  for (const auto& a : o_.python_args) argv.push_back(a);
  for (const auto& a : spec.args) argv.push_back(a);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  char* envp[] = {nullptr};

  // Source fd -> target fd inside the child.
  std::vector<std::pair<int, int>> moves{{stdin_fd.fd, 0}, {out.w.fd, 1}, {err.w.fd, 2}, {chan.w.fd, kChannelFd}};
  if (secret_fd.fd >= 0) moves.push_back({secret_fd.fd, kSecretFd});
  moves.push_back({exec_w.fd, kExecErrFd});
  for (size_t i = 0; i < file_fds.size(); ++i) moves.push_back({file_fds[i].fd, kFirstFileFd + static_cast<int>(i)});
  int max_target = kFirstFileFd + static_cast<int>(file_fds.size());
  const uid_t uid = static_cast<uid_t>(uid_base_ + slot);
  const bool as_root = as_root_;
  struct rlimit lim_cpu {
    static_cast<rlim_t>(cpu_s), static_cast<rlim_t>(cpu_s + 1)
  };
  struct rlimit lim_as {
    static_cast<rlim_t>(mem_mb) << 20, static_cast<rlim_t>(mem_mb) << 20
  };
  struct rlimit lim_fsize {
    static_cast<rlim_t>(o_.file_size_mb) << 20, static_cast<rlim_t>(o_.file_size_mb) << 20
  };
  struct rlimit lim_nproc {
    static_cast<rlim_t>(o_.max_processes), static_cast<rlim_t>(o_.max_processes)
  };
  struct rlimit lim_nofile {
    static_cast<rlim_t>(o_.max_open_files), static_cast<rlim_t>(o_.max_open_files)
  };
  struct rlimit lim_zero {
    0, 0
  };

  auto t0 = Clock::now();
  int pp[2];  // the reaper reports the sandbox leader's pid here
  if (::pipe2(pp, O_CLOEXEC) != 0) fail("sandbox: pipe2 failed: {}", std::strerror(errno));
  Fd pid_r(pp[0]), pid_w(pp[1]);
  const int pid_w_fd = pid_w.fd;

  // Two processes: a reaper R (a child subreaper that reaps everything below it, so even bwrap's
  // pid-namespace init never lingers as a zombie counted against the slot's process limit) and,
  // under it, the leader L: its own process group, limits, the slot's uid, then exec bwrap.
  pid_t pid = ::fork();
  if (pid < 0) {
    res.ending = Ending::spawn_failed;
    res.detail = std::string("fork failed: ") + std::strerror(errno);
    return res;
  }
  if (pid == 0) {
    // ---- Reaper R: async-signal-safe calls only. ----
    ::sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t leader = ::fork();
    if (leader == 0) {
      // ---- Leader L. ----
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      // Park every source above the targets first, so no dup2 clobbers a source not yet moved.
      int parked[64];
      size_t nm = moves.size() < 64 ? moves.size() : 64;
      for (size_t i = 0; i < nm; ++i) parked[i] = ::fcntl(moves[i].first, F_DUPFD, 1000);
      auto die = [](char code) {
        (void)!::write(kExecErrFd, &code, 1);
        ::_exit(127);
      };
      for (size_t i = 0; i < nm; ++i) {
        if (parked[i] < 0 || ::dup2(parked[i], moves[i].second) < 0) ::_exit(127);
      }
      ::fcntl(kExecErrFd, F_SETFD, FD_CLOEXEC);
      ::syscall(SYS_close_range, static_cast<unsigned>(max_target + 1), ~0u, 0);
      ::setrlimit(RLIMIT_CPU, &lim_cpu);
      ::setrlimit(RLIMIT_AS, &lim_as);
      ::setrlimit(RLIMIT_FSIZE, &lim_fsize);
      ::setrlimit(RLIMIT_NOFILE, &lim_nofile);
      ::setrlimit(RLIMIT_CORE, &lim_zero);
      if (as_root) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0) die('u');
        ::setrlimit(RLIMIT_NPROC, &lim_nproc);
        if (::setuid(uid) != 0) die('u');
      } else {
        ::setrlimit(RLIMIT_NPROC, &lim_nproc);
      }
      ::execve(cargv[0], cargv.data(), envp);
      die('x');
    }
    if (leader < 0) ::_exit(125);
    ::setpgid(leader, leader);
    (void)!::write(pid_w_fd, &leader, sizeof leader);
    ::syscall(SYS_close_range, 0u, ~0u, 0);  // hold no pipe end: the host waits for EOFs
    int st = 0, code = 125;
    while (true) {
      int s2 = 0;
      pid_t w = ::waitpid(-1, &s2, 0);
      if (w < 0) {
        if (errno == EINTR) continue;
        break;  // ECHILD: everything below is gone
      }
      if (w == leader) {
        st = s2;
        code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
    }
    ::_exit(code);
  }

  // ---- Host side. ----
  stdin_fd.reset();
  secret_fd.reset();
  file_fds.clear();
  out.w.reset();
  err.w.reset();
  chan.w.reset();
  exec_w.reset();
  pid_w.reset();
  pid_t leader = -1;
  {
    ssize_t g;
    do g = ::read(pid_r.fd, &leader, sizeof leader);
    while (g < 0 && errno == EINTR);
    if (g != sizeof leader) leader = -1;
  }
  char exec_err = 0;
  ssize_t eg;
  do eg = ::read(exec_r.fd, &exec_err, 1);
  while (eg < 0 && errno == EINTR);
  if (eg == 1 || leader < 0) {
    if (leader > 0) kill_tree(leader);
    int st = 0;
    ::waitpid(pid, &st, 0);
    res.ending = Ending::spawn_failed;
    res.detail = leader < 0        ? "fork of the sandbox leader failed"
                 : exec_err == 'u' ? "could not switch to the slot's uid " + std::to_string(uid)
                                   : "could not exec " + o_.bwrap;
    return res;
  }
  Fd pidfd(pidfd_open(pid));
  const auto deadline = t0 + std::chrono::milliseconds(wall_ms);

  struct Stream {
    int fd;
    std::string* buf;
    size_t cap;
    bool open = true;
  };
  Stream streams[3] = {
      {out.r.fd, &res.out, out_cap}, {err.r.fd, &res.err, out_cap}, {chan.r.fd, &res.channel, kChannelCap}};
  bool exited = false, killed = false;
  int status = 0;
  struct rusage ru {};
  char buf[65536];

  auto reap = [&](bool block) {
    if (exited) return;
    pid_t w = ::wait4(pid, &status, block ? 0 : WNOHANG, &ru);
    if (w == pid) exited = true;
  };
  auto kill_all = [&](Ending why) {
    if (!killed) {
      kill_tree(leader);
      killed = true;
      res.ending = why;
    }
  };

  while (true) {
    bool any_open = streams[0].open || streams[1].open || streams[2].open;
    if (exited && !any_open) break;
    auto now = Clock::now();
    if (!killed && now >= deadline) kill_all(Ending::timeout);
    // After a kill, give the kernel a bounded time to tear the namespace down (pipes hit EOF).
    if (killed && exited && now >= deadline + std::chrono::seconds(5)) break;
    pollfd pf[4];
    int idx[4];
    int n = 0;
    for (int i = 0; i < 3; ++i)
      if (streams[i].open) {
        pf[n] = {streams[i].fd, POLLIN, 0};
        idx[n++] = i;
      }
    if (!exited && pidfd.fd >= 0) {
      pf[n] = {pidfd.fd, POLLIN, 0};
      idx[n++] = -1;
    }
    int timeout_ms = 50;
    if (!killed) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      timeout_ms = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(left, pidfd.fd >= 0 ? 1000 : 20)));
    }
    int rc = ::poll(pf, static_cast<nfds_t>(n), timeout_ms);
    if (rc < 0 && errno != EINTR) break;
    for (int k = 0; k < n && rc > 0; ++k) {
      if (!pf[k].revents) continue;
      if (idx[k] < 0) {
        reap(true);
        continue;
      }
      Stream& s = streams[idx[k]];
      while (true) {
        ssize_t got = ::read(s.fd, buf, sizeof buf);
        if (got > 0) {
          size_t room = s.cap > s.buf->size() ? s.cap - s.buf->size() : 0;
          s.buf->append(buf, std::min(room, static_cast<size_t>(got)));
          if (static_cast<size_t>(got) > room) {
            kill_all(Ending::output_limit);
            // Keep draining without storing so writers blocked on a full pipe see EOF/EPIPE.
          }
          continue;
        }
        if (got == 0) s.open = false;
        break;  // EAGAIN or EOF
      }
    }
    reap(false);
  }
  if (!exited) {
    kill_all(killed ? res.ending : Ending::timeout);
    ::kill(pid, SIGKILL);  // the reaper too, if the tree did not go away in time
    reap(true);
  }
  res.wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  res.cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
  if (WIFEXITED(status))
    res.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    res.exit_code = 128 + WTERMSIG(status);
  if (!killed) res.ending = Ending::exited;
  // bwrap reports a child killed by signal N as 128 + N.
  res.cpu_limit = res.exit_code == 128 + SIGXCPU ||
                  (res.exit_code == 128 + SIGKILL && !killed && res.cpu_ms >= static_cast<double>(cpu_s) * 1e3 * 0.95);
  return res;
}

void Sandbox::self_test() {
  RunSpec s;
  s.args = {"-c", "import sys; sys.stdout.write('ok'); open(3, 'w').write('ready')"};
  s.limits.wall_ms = 10000;
  auto r = run(s);
  if (r.ending != Ending::exited || r.exit_code != 0 || r.out != "ok" || r.channel != "ready")
    fail("sandbox self-test failed ({}, exit {}): {}{}", ending_name(r.ending), r.exit_code, r.detail,
         r.err.substr(0, 2000));
}

std::vector<std::pair<int, uint32_t>> processes_of(const std::vector<uint32_t>& uids) {
  std::vector<std::pair<int, uint32_t>> found;
  if (uids.empty()) return found;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("Uid:", 0) != 0) continue;
      std::istringstream is(line.substr(4));
      uint32_t real = 0;
      is >> real;
      for (auto u : uids)
        if (u == real) found.emplace_back(std::stoi(name), real);
      break;
    }
  }
  return found;
}

}  // namespace r1::sandbox
