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
#include "rewards/sandbox/seccomp.hpp"

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
constexpr int kChannelFd = 3, kSecretFd = 4, kExecErrFd = 5, kSeccompFd = 6, kFirstFileFd = 10;

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

namespace {

// What the leader process installs before it execs bwrap: every descriptor at its place in the
// child, the limits, the identity. Prepared before fork: after it the child makes only syscalls.
struct ChildPlan {
  std::vector<std::pair<int, int>> moves;  // source fd -> fd in the child
  int max_target = 0;
  std::vector<std::string> argv;
  struct rlimit cpu, as, fsize, nproc, nofile, core;
  uid_t uid = 0;
  bool as_root = false;
};

// The run's descriptors on the host side: the ends the child gets, and the ends the host reads.
struct RunIo {
  Fd stdin_fd, secret_fd, seccomp_fd;
  std::vector<Fd> file_fds;
  Pipe out, err, chan;
  Fd exec_r, exec_w;  // close-on-exec: EOF means bwrap was exec'd, a byte means our child failed first
  Fd pid_r, pid_w;    // the reaper reports the sandbox leader's pid here
};

RunIo open_io(const RunSpec& spec) {
  RunIo io;
  io.stdin_fd = sealed_memfd("r1-stdin", spec.stdin_data);
  if (!spec.secret.empty()) io.secret_fd = sealed_memfd("r1-secret", spec.secret);
  io.seccomp_fd = sealed_memfd("r1-seccomp", seccomp_program());
  for (const auto& [name, content] : spec.files) io.file_fds.push_back(sealed_memfd("r1-file", content));
  io.out = make_pipe(), io.err = make_pipe(), io.chan = make_pipe();
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail("sandbox: pipe2 failed: {}", std::strerror(errno));
  io.exec_r = Fd(p[0]), io.exec_w = Fd(p[1]);
  if (::pipe2(p, O_CLOEXEC) != 0) fail("sandbox: pipe2 failed: {}", std::strerror(errno));
  io.pid_r = Fd(p[0]), io.pid_w = Fd(p[1]);
  return io;
}

// Leader L: its own process group, every descriptor at its place, limits, the slot's uid, bwrap.
// Async-signal-safe calls only.
[[noreturn]] void exec_leader(const ChildPlan& plan, char* const* argv) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Park every source above all targets first, so no dup2 clobbers a source not yet moved (any
  // open-file limit above the targets works: nothing is parked at a fixed high number).
  int parked[64];
  const size_t nm = plan.moves.size() < 64 ? plan.moves.size() : 64;
  for (size_t i = 0; i < nm; ++i) parked[i] = ::fcntl(plan.moves[i].first, F_DUPFD, plan.max_target + 1);
  auto die = [](char code) {
    (void)!::write(kExecErrFd, &code, 1);
    ::_exit(127);
  };
  for (size_t i = 0; i < nm; ++i)
    if (parked[i] < 0 || ::dup2(parked[i], plan.moves[i].second) < 0) ::_exit(127);
  ::fcntl(kExecErrFd, F_SETFD, FD_CLOEXEC);
  ::syscall(SYS_close_range, static_cast<unsigned>(plan.max_target + 1), ~0u, 0);
  ::setrlimit(RLIMIT_CPU, &plan.cpu);
  ::setrlimit(RLIMIT_AS, &plan.as);
  ::setrlimit(RLIMIT_FSIZE, &plan.fsize);
  ::setrlimit(RLIMIT_NOFILE, &plan.nofile);
  ::setrlimit(RLIMIT_CORE, &plan.core);
  if (plan.as_root) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(plan.uid) != 0) die('u');
    ::setrlimit(RLIMIT_NPROC, &plan.nproc);
    if (::setuid(plan.uid) != 0) die('u');
  } else {
    ::setrlimit(RLIMIT_NPROC, &plan.nproc);
  }
  char* envp[] = {nullptr};
  ::execve(argv[0], argv, envp);
  die('x');
  ::_exit(127);
}

// Reaper R: a child subreaper that reaps everything below it (so even bwrap's pid-namespace init
// never lingers as a zombie counted against the slot's process limit), with the leader under it.
[[noreturn]] void run_reaper(const ChildPlan& plan, char* const* argv, int pid_w_fd) {
  ::sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  pid_t leader = ::fork();
  if (leader == 0) exec_leader(plan, argv);
  if (leader < 0) ::_exit(125);
  ::setpgid(leader, leader);
  (void)!::write(pid_w_fd, &leader, sizeof leader);
  ::syscall(SYS_close_range, 0u, ~0u, 0);  // hold no pipe end: the host waits for EOFs
  int code = 125;
  while (true) {
    int st = 0;
    pid_t w = ::waitpid(-1, &st, 0);
    if (w < 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: everything below is gone
    }
    if (w == leader) code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  ::_exit(code);
}

template <class T>
T read_one(int fd, T fallback) {
  T v{};
  ssize_t g;
  do g = ::read(fd, &v, sizeof v);
  while (g < 0 && errno == EINTR);
  return g == static_cast<ssize_t>(sizeof v) ? v : fallback;
}

// A stream read under a cap, and the process tree being watched.
struct Stream {
  int fd;
  std::string* buf;
  size_t cap;
  bool open = true;
};
using Streams = Stream[3];
struct Tree {
  pid_t pid, leader;  // the reaper and the sandbox leader
  Fd pidfd;
  bool exited = false, killed = false;
  int status = 0;
  struct rusage ru {};
};

// Reads every stream until EOF and the tree has exited, killing it at the deadline or when a
// stream exceeds its cap (then the stream is drained without storing, so blocked writers see EOF).
void drain(Streams& streams, Tree& tree, Clock::time_point deadline, RunResult& res) {
  char buf[65536];
  auto reap = [&](bool block) {
    if (tree.exited) return;
    if (::wait4(tree.pid, &tree.status, block ? 0 : WNOHANG, &tree.ru) == tree.pid) tree.exited = true;
  };
  auto kill_all = [&](Ending why) {
    if (tree.killed) return;
    kill_tree(tree.leader);
    tree.killed = true;
    res.ending = why;
  };
  while (true) {
    const bool any_open = streams[0].open || streams[1].open || streams[2].open;
    if (tree.exited && !any_open) break;
    const auto now = Clock::now();
    if (!tree.killed && now >= deadline) kill_all(Ending::timeout);
    // After a kill, give the kernel a bounded time to tear the namespace down (pipes hit EOF).
    if (tree.killed && tree.exited && now >= deadline + std::chrono::seconds(5)) break;
    pollfd pf[4];
    int idx[4], n = 0;
    for (int i = 0; i < 3; ++i)
      if (streams[i].open) pf[n] = {streams[i].fd, POLLIN, 0}, idx[n++] = i;
    if (!tree.exited && tree.pidfd.fd >= 0) pf[n] = {tree.pidfd.fd, POLLIN, 0}, idx[n++] = -1;
    int timeout_ms = 50;
    if (!tree.killed) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      timeout_ms = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(left, tree.pidfd.fd >= 0 ? 1000 : 20)));
    }
    int rc = ::poll(pf, static_cast<nfds_t>(n), timeout_ms);
    if (rc < 0 && errno != EINTR) break;
    for (int k = 0; k < n && rc > 0; ++k) {
      if (!pf[k].revents) continue;
      if (idx[k] < 0) {
        reap(true);
        continue;
      }
      Stream& st = streams[idx[k]];
      while (true) {
        const ssize_t got = ::read(st.fd, buf, sizeof buf);
        if (got == 0) st.open = false;
        if (got <= 0) break;  // EOF, or EAGAIN
        const size_t room = st.cap > st.buf->size() ? st.cap - st.buf->size() : 0;
        st.buf->append(buf, std::min(room, static_cast<size_t>(got)));
        if (static_cast<size_t>(got) > room) kill_all(Ending::output_limit);
      }
    }
    reap(false);
  }
  if (!tree.exited) {
    kill_all(tree.killed ? res.ending : Ending::timeout);
    ::kill(tree.pid, SIGKILL);  // the reaper too, if the tree did not go away in time
    reap(true);
  }
}

// The host's side of a run: wait for bwrap's exec, read stdout, stderr and the channel under their
// caps until the tree is gone, kill it at the deadline or a cap, reap it.
RunResult supervise(RunIo& io, pid_t pid, Clock::time_point deadline, int64_t cpu_s, uid_t uid, Clock::time_point t0,
                    size_t out_cap, const std::string& bwrap) {
  RunResult res;
  io.stdin_fd.reset(), io.secret_fd.reset(), io.seccomp_fd.reset();
  io.file_fds.clear();
  io.out.w.reset(), io.err.w.reset(), io.chan.w.reset(), io.exec_w.reset(), io.pid_w.reset();
  const pid_t leader = read_one<pid_t>(io.pid_r.fd, -1);
  const char exec_err = read_one<char>(io.exec_r.fd, 0);
  if (exec_err != 0 || leader < 0) {
    if (leader > 0) kill_tree(leader);
    int st = 0;
    ::waitpid(pid, &st, 0);
    res.ending = Ending::spawn_failed;
    res.detail = leader < 0        ? "fork of the sandbox leader failed"
                 : exec_err == 'u' ? "could not switch to the slot's uid " + std::to_string(uid)
                                   : "could not exec " + bwrap;
    return res;
  }
  Streams streams = {
      {io.out.r.fd, &res.out, out_cap}, {io.err.r.fd, &res.err, out_cap}, {io.chan.r.fd, &res.channel, kChannelCap}};
  Tree tree{pid, leader, Fd(pidfd_open(pid))};
  drain(streams, tree, deadline, res);
  res.wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  res.cpu_ms = (tree.ru.ru_utime.tv_sec + tree.ru.ru_stime.tv_sec) * 1e3 +
               (tree.ru.ru_utime.tv_usec + tree.ru.ru_stime.tv_usec) / 1e3;
  if (WIFEXITED(tree.status))
    res.exit_code = WEXITSTATUS(tree.status);
  else if (WIFSIGNALED(tree.status))
    res.exit_code = 128 + WTERMSIG(tree.status);
  if (!tree.killed) res.ending = Ending::exited;
  // bwrap reports a child killed by signal N as 128 + N.
  res.cpu_limit = res.exit_code == 128 + SIGXCPU || (res.exit_code == 128 + SIGKILL && !tree.killed &&
                                                     res.cpu_ms >= static_cast<double>(cpu_s) * 1e3 * 0.95);
  return res;
}

}  // namespace

std::vector<std::string> Sandbox::bwrap_argv(const RunSpec& spec) const {
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
  // /dev holds only the device nodes, read-only (its tmpfs would otherwise take half the host's RAM).
  add({"--dev", "/dev", "--remount-ro", "/dev", "--size", std::to_string(o_.tmp_size_mb << 20), "--tmpfs", "/tmp"});
  for (size_t i = 0; i < spec.files.size(); ++i)
    add({"--ro-bind-data", std::to_string(kFirstFileFd + static_cast<int>(i)), "/sandbox/" + spec.files[i].first});
  add({"--remount-ro", "/", "--chdir", "/tmp", "--seccomp", std::to_string(kSeccompFd), "--", python_real_});
  for (const auto& a : o_.python_args) argv.push_back(a);
  for (const auto& a : spec.args) argv.push_back(a);
  return argv;
}

RunResult Sandbox::run_in_slot(const RunSpec& spec, int slot) {
  const int64_t wall_ms = spec.limits.wall_ms > 0 ? spec.limits.wall_ms : o_.wall_timeout_ms;
  const int64_t cpu_s = spec.limits.cpu_seconds > 0 ? spec.limits.cpu_seconds : o_.cpu_seconds;
  const int64_t mem_mb = spec.limits.memory_mb > 0 ? spec.limits.memory_mb : o_.memory_mb;
  RunIo io = open_io(spec);
  ChildPlan plan;
  plan.argv = bwrap_argv(spec);
  plan.moves = {{io.stdin_fd.fd, 0},        {io.out.w.fd, 1},           {io.err.w.fd, 2},
                {io.chan.w.fd, kChannelFd}, {io.exec_w.fd, kExecErrFd}, {io.seccomp_fd.fd, kSeccompFd}};
  if (io.secret_fd.fd >= 0) plan.moves.push_back({io.secret_fd.fd, kSecretFd});
  for (size_t i = 0; i < io.file_fds.size(); ++i)
    plan.moves.push_back({io.file_fds[i].fd, kFirstFileFd + static_cast<int>(i)});
  plan.max_target = kFirstFileFd + static_cast<int>(io.file_fds.size());
  auto lim = [](int64_t soft, int64_t hard) { return rlimit{static_cast<rlim_t>(soft), static_cast<rlim_t>(hard)}; };
  plan.cpu = lim(cpu_s, cpu_s + 1);
  plan.as = lim(mem_mb << 20, mem_mb << 20);
  plan.fsize = lim(o_.file_size_mb << 20, o_.file_size_mb << 20);
  plan.nproc = lim(o_.max_processes, o_.max_processes);
  plan.nofile = lim(o_.max_open_files, o_.max_open_files);
  plan.core = lim(0, 0);
  plan.uid = static_cast<uid_t>(uid_base_ + slot);
  plan.as_root = as_root_;
  std::vector<char*> cargv;
  for (auto& a : plan.argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  RunResult res;
  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    res.ending = Ending::spawn_failed;
    res.detail = std::string("fork failed: ") + std::strerror(errno);
    return res;
  }
  if (pid == 0) run_reaper(plan, cargv.data(), io.pid_w.fd);
  return supervise(io, pid, t0 + std::chrono::milliseconds(wall_ms), cpu_s, plan.uid, t0,
                   static_cast<size_t>(o_.output_limit_kb) * 1024, o_.bwrap);
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
