// rewards/sandbox/: runs untrusted Python in a real sandbox, and the "code" reward checker on top.
// This header owns the sandbox runner; code_checker.hpp owns the checker.
//
// Each run is one bubblewrap (bwrap) process tree:
//   - its own process group and session, new user, pid, net, mount, ipc and uts namespaces, no
//     nested user namespaces, --die-with-parent;
//   - a root that shows only the read-only binds of `ro_binds` (what the interpreter needs), a
//     read-only /dev of device nodes only, no /proc, the run's files read-only under /sandbox
//     (copied from sealed memfds: nothing is written on the host), and a private size-capped
//     tmpfs at /tmp (the working dir);
//   - a seccomp filter (seccomp.hpp) that denies ptrace, process_vm_readv/writev, pidfd_getfd,
//     io_uring and the other system calls that reach another process or the kernel's state;
//   - the descriptors the host passes (stdio, fd 3 the channel, fd 4 the secret) moved into place
//     through copies above the highest target, so any open-file limit works;
//   - rlimits on CPU time, address space, file size, processes and open files, set in the forked
//     child before bwrap is exec'd; as root each parallel slot also runs under its own host uid
//     (uid_base + slot), so the process limit is per slot and nothing in the sandbox is host root.
//     With uid_base = 0 the Sandbox takes a range of 1024 uids that no other live Sandbox on the
//     host holds: an flock'd file per range under lock_dir, released when the Sandbox (or its
//     process) goes away;
//   - a wall-clock timeout and output caps, on which the whole tree is killed (the process group,
//     and with it the pid namespace) and reaped before run() returns.
// Runs are spread over `parallelism` slots; run() blocks until one is free.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "rewards/sandbox/options.hpp"

namespace r1::sandbox {

// Per-run limits; zero fields take the SandboxOptions defaults.
struct Limits {
  int64_t wall_ms = 0, cpu_seconds = 0, memory_mb = 0;
};

struct RunSpec {
  std::vector<std::pair<std::string, std::string>> files;  // name -> content, read-only in /sandbox
  std::vector<std::string> args;  // after the interpreter and its flags, e.g. {"/sandbox/main.py"}
  std::string stdin_data;
  std::string secret;  // readable once on fd 4 inside (a sealed memfd); empty: no fd 4
  Limits limits;
};

// How the run ended, as seen from the host. The process inside can only influence `code`,
// `out`, `err` and `channel`; the rest is decided here.
enum class Ending {
  exited,        // the interpreter exited by itself (exit_code; 128+N when killed by signal N)
  timeout,       // wall-clock limit: killed
  output_limit,  // stdout, stderr or the channel exceeded its cap: killed
  spawn_failed,  // could not even fork/exec (host-side problem)
};
const char* ending_name(Ending e);

struct RunResult {
  Ending ending = Ending::exited;
  int exit_code = -1;      // bwrap's status: the interpreter's exit code, or 128 + signal
  bool cpu_limit = false;  // died of SIGXCPU, or of SIGKILL at the CPU hard limit
  std::string out, err;    // stdout and stderr, each at most output_limit_kb
  std::string channel;     // what the run wrote to fd 3 (at most 1 MiB)
  double wall_ms = 0, cpu_ms = 0;
  std::string detail;  // host-side explanation for spawn_failed
};

struct SandboxStats {
  uint64_t runs = 0, timeouts = 0, output_limits = 0, spawn_failures = 0, cpu_limits = 0;
};

class Sandbox {
 public:
  explicit Sandbox(SandboxOptions o = {});
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // Runs one program; blocks for a free slot, then until the whole tree is gone. Thread-safe.
  RunResult run(const RunSpec& spec);

  const SandboxOptions& options() const { return o_; }
  int slots() const { return static_cast<int>(free_.capacity()); }
  SandboxStats stats() const;
  // Host uids the slots run under (empty when not root: runs keep the caller's uid).
  std::vector<uint32_t> slot_uids() const;

  // Checks that bwrap can start the interpreter here; throws r1::Error explaining why not.
  void self_test();

 private:
  int acquire();
  void release(int slot);
  RunResult run_in_slot(const RunSpec& spec, int slot);
  std::vector<std::string> bwrap_argv(const RunSpec& spec) const;

  SandboxOptions o_;
  std::string python_real_;
  bool as_root_ = false;
  int64_t uid_base_ = 0;  // the uid of slot 0
  int range_lock_ = -1;   // the flock'd file that holds the uid range (uid_base = 0), or -1
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<int> free_;
  std::atomic<uint64_t> runs_{0}, timeouts_{0}, output_limits_{0}, spawn_failures_{0}, cpu_limits_{0};
};

// The first uid of the automatic ranges (uid_base = 0) and their size.
constexpr int64_t kAutoUidBase = 620000, kUidRange = 1024, kAutoRanges = 256;

// Processes (pid, uid) currently running under any of `uids`; tests use it to prove that no
// sandboxed process outlives its run.
std::vector<std::pair<int, uint32_t>> processes_of(const std::vector<uint32_t>& uids);

}  // namespace r1::sandbox
