// r1 launch --nproc N -- train CONFIG ...: starts N local ranks of r1 with torchrun's environment
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and waits for them. A rank that fails is
// reported; the others are expected to fail on their own within [distributed] timeout_s, and any
// still running after --grace seconds are killed, so the launcher never hangs. Each rank that
// finishes is reported with its peak RSS (the kernel's ru_maxrss).
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <thread>

#include "cli/commands.hpp"
#include "common/error.hpp"

namespace r1::cli {

std::vector<std::string>& launch_command() {
  static std::vector<std::string> command;
  return command;
}

void add_launch(CLI::App& app) {
  struct Args {
    int64_t nproc = 2;
    std::string master_addr = "127.0.0.1";
    int64_t master_port = 29500;
    int64_t grace = 60;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("launch", "Run N local ranks: r1 launch --nproc N -- train CONFIG [...]");
  cmd->add_option("--nproc", a->nproc, "ranks on this machine")->check(CLI::Range(1, 1024));
  cmd->add_option("--master-addr", a->master_addr, "rendezvous address (rank 0 listens there)");
  cmd->add_option("--master-port", a->master_port, "rendezvous port")->check(CLI::Range(1, 65535));
  cmd->add_option("--grace", a->grace, "seconds to let the other ranks fail by themselves after one fails");
  cmd->callback([a] {
    std::vector<std::string> rest = launch_command();
    if (rest.empty()) throw ConfigError("r1 launch: give the command to run after --, e.g. -- train configs/demo.toml");
    std::vector<pid_t> pids;
    for (int64_t r = 0; r < a->nproc; ++r) {
      pid_t pid = fork();
      if (pid < 0) fail("r1 launch: fork failed");
      if (pid == 0) {
        setenv("RANK", std::to_string(r).c_str(), 1);
        setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
        setenv("WORLD_SIZE", std::to_string(a->nproc).c_str(), 1);
        setenv("LOCAL_WORLD_SIZE", std::to_string(a->nproc).c_str(), 1);
        setenv("MASTER_ADDR", a->master_addr.c_str(), 1);
        setenv("MASTER_PORT", std::to_string(a->master_port).c_str(), 1);
        std::vector<char*> argv = {const_cast<char*>("r1")};
        for (auto& s : rest) argv.push_back(s.data());
        argv.push_back(nullptr);
        execv("/proc/self/exe", argv.data());
        _exit(127);
      }
      pids.push_back(pid);
    }
    int worst = 0;
    size_t alive = pids.size();
    std::optional<std::chrono::steady_clock::time_point> deadline;
    while (alive > 0) {
      int status = 0;
      struct rusage usage {};
      pid_t pid = wait4(-1, &status, deadline ? WNOHANG : 0, &usage);
      if (pid == 0) {  // waiting out the grace period
        if (std::chrono::steady_clock::now() > *deadline) {
          for (pid_t p : pids) kill(p, SIGKILL);
          fmt::print(stderr, "r1 launch: killed the ranks still running {}s after the first failure\n", a->grace);
          deadline.reset();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      if (pid < 0) break;
      --alive;
      const auto r = std::find(pids.begin(), pids.end(), pid) - pids.begin();
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code != 0) {
        if (WIFSIGNALED(status))
          fmt::print(stderr, "r1 launch: rank {} was killed by signal {}\n", r, WTERMSIG(status));
        else
          fmt::print(stderr, "r1 launch: rank {} exited with code {}\n", r, code);
        if (!deadline) deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a->grace);
        worst = worst ? worst : code;
      } else {
        fmt::print(stderr, "r1 launch: rank {} finished, peak RSS {:.0f} MiB\n", r,
                   static_cast<double>(usage.ru_maxrss) / 1024.0);
      }
    }
    if (worst) throw Error(fmt::format("r1 launch: a rank failed (first failure: exit code {})", worst));
  });
}

}  // namespace r1::cli
