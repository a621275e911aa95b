// The sandbox and the "code" checker: HumanEval canonical solutions pass and their `pass` bodies
// fail; adversarial programs are contained, score 0, leave no process behind and change nothing
// on the host; stdin/stdout comparison modes; the checker through the rewards registry.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <boost/json.hpp>

#include "attack_corpus.hpp"
#include "common/config.hpp"
#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/json.hpp"
#include "rewards/backend.hpp"
#include "rewards/sandbox/code_checker.hpp"
#include "rewards/sandbox/seccomp.hpp"
#include "rewards/scorer.hpp"
#include "test_paths.hpp"

namespace fs = std::filesystem;
using namespace r1::sandbox;
using Clock = std::chrono::steady_clock;

namespace {

std::shared_ptr<Sandbox> shared_sandbox() {
  static std::shared_ptr<Sandbox> sb = [] {
    SandboxOptions o;
    o.parallelism = 4;
    return std::make_shared<Sandbox>(o);
  }();
  return sb;
}

CodeOptions fast_options() {
  CodeOptions o;
  o.timeout_ms = 3000;
  o.cpu_seconds = 2;
  o.memory_mb = 512;
  return o;
}

// No process of the sandbox's slot uids may survive a run (the kernel may need a moment to
// finish tearing a killed pid namespace down, so poll briefly).
void require_no_leftovers(Sandbox& sb) { r1::test::require_no_processes_of(sb.slot_uids()); }

const char* kAddTest = R"(
def check(candidate):
    assert candidate(1, 2) == 3
    assert candidate(2, 2) == 4
    assert candidate(-1, 1) == 0
)";

CodeResult run_add(const std::string& code) {
  return run_assert_tests(*shared_sandbox(), code, kAddTest, "add", fast_options());
}

struct Problem {
  std::string task_id, prompt, solution, test, entry;
};

std::vector<Problem> load_humaneval() {
  std::vector<Problem> ps;
  auto path = r1::test::shared_file("data/humaneval/HumanEval.jsonl");
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto v = r1::json::parse(line, path.string());
    r1::json::Object o(v, "HumanEval");
    ps.push_back({o.string("task_id"), o.string("prompt"), o.string("canonical_solution"), o.string("test"),
                  o.string("entry_point")});
  }
  return ps;
}

// Runs f(i) for i in [0, n) on `threads` threads.
template <class F>
void parallel_for(size_t n, int threads, F f) {
  std::atomic<size_t> next{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (size_t i; (i = next++) < n;) f(i);
    });
  for (auto& t : ts) t.join();
}

}  // namespace

TEST_CASE("sandbox: each Sandbox holds its own uid range, so a fork bomb in one never starves another" *
          doctest::skip(::geteuid() != 0)) {  // as root only: otherwise runs keep the caller's uid
  SandboxOptions o;
  o.parallelism = 1;
  o.max_processes = 8;
  auto a = std::make_unique<Sandbox>(o), b = std::make_unique<Sandbox>(o);
  REQUIRE(a->slot_uids().size() == 1);
  CHECK(a->slot_uids()[0] != b->slot_uids()[0]);
  CHECK(std::abs(static_cast<int64_t>(a->slot_uids()[0]) - static_cast<int64_t>(b->slot_uids()[0])) >= kUidRange);
  const uint32_t freed = b->slot_uids()[0];
  b.reset();  // its range is free again
  CHECK(Sandbox(o).slot_uids()[0] == freed);

  // A fills its uid's process limit for two seconds; an honest run in another Sandbox meanwhile
  // passes, and one that shares A's uids (the same uid_base by hand) cannot even start.
  auto honest_in = [&](const SandboxOptions& opts) {
    Sandbox other(opts);
    return run_assert_tests(other, "def add(a, b):\n    return a + b\n", kAddTest, "add", fast_options());
  };
  RunSpec bomb;
  bomb.args = {"-c",
               "import os, time\n"
               "for i in range(64):\n"
               "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
               "    if pid == 0:\n        time.sleep(2)\n        os._exit(0)\n"
               "time.sleep(2)\n"};
  bomb.limits.wall_ms = 2500;
  std::thread t([&] { a->run(bomb); });
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  CodeResult own = honest_in(o);
  SandboxOptions same = o;
  same.uid_base = a->slot_uids()[0];
  CodeResult shared = honest_in(same);
  t.join();
  CHECK(own.verdict == Verdict::passed);
  CHECK(shared.verdict != Verdict::passed);
  MESSAGE("sharing the fork bomb's uids: " << verdict_name(shared.verdict) << " " << shared.detail);
  require_no_leftovers(*a);
}

TEST_CASE("sandbox: a run is isolated, limited and fully reaped") {
  auto& sb = *shared_sandbox();
  sb.self_test();

  RunSpec s;
  s.args = {"-c",
            "import os, socket\n"
            "print(os.getuid(), os.getpid(), sorted(os.listdir('/')))\n"
            "print(os.path.exists('/proc'), os.path.exists('/etc/passwd'), os.path.exists('/work'))\n"
            "open('/tmp/x', 'w').write('ok')\n"
            "try:\n  open('/usr/x', 'w')\nexcept OSError as e:\n  print('ro', e.errno)\n"
            "try:\n  socket.create_connection(('127.0.0.1', 22), timeout=1)\nexcept OSError as e:\n  print('net', "
            "e.errno)\n"};
  auto r = sb.run(s);
  CHECK(r.ending == Ending::exited);
  CHECK(r.exit_code == 0);
  INFO(r.out << r.err);
  CHECK(r.out.find("1000 2 ['bin', 'dev', 'lib', 'lib64', 'tmp', 'usr']") == 0);  // sandbox uid, pid 2 (pid ns)
  CHECK(r.out.find("False False False") != std::string::npos);
  CHECK(r.out.find("ro 30") != std::string::npos);  // EROFS
  // Its own empty network namespace: nothing listens on its loopback, nothing else is reachable.
  CHECK((r.out.find("net 111") != std::string::npos || r.out.find("net 101") != std::string::npos));
  require_no_leftovers(sb);

  SUBCASE("wall-clock timeout kills the tree, background children included") {
    RunSpec t;
    t.args = {"-c",
              "import os, time\nfor _ in range(3):\n  if os.fork() == 0:\n    time.sleep(1000)\ntime.sleep(1000)"};
    t.limits.wall_ms = 500;
    auto t0 = Clock::now();
    auto rr = sb.run(t);
    CHECK(rr.ending == Ending::timeout);
    CHECK(Clock::now() - t0 < std::chrono::seconds(3));
    require_no_leftovers(sb);
  }
  SUBCASE("output is capped") {
    RunSpec t;
    t.args = {"-c", "import sys\nwhile True: sys.stdout.write('x' * 65536)"};
    auto rr = sb.run(t);
    CHECK(rr.ending == Ending::output_limit);
    CHECK(rr.out.size() == static_cast<size_t>(sb.options().output_limit_kb) * 1024);
    require_no_leftovers(sb);
  }
  SUBCASE("files are read-only and the secret is only on fd 4") {
    RunSpec t;
    t.files = {{"data.txt", "hello"}};
    t.secret = "s3cret";
    t.args = {"-c",
              "import os\nprint(open('/sandbox/data.txt').read(), os.read(4, 100).decode())\n"
              "try:\n  open('/sandbox/data.txt', 'w')\nexcept OSError as e:\n  print('ro', e.errno)"};
    auto rr = sb.run(t);
    CHECK(rr.out == "hello s3cret\nro 30\n");
  }
}

TEST_CASE("code checker: output comparison modes") {
  CHECK(outputs_match("1 2\n", "1 2", OutputCompare::exact, 0));
  CHECK(outputs_match("1 2\r\n", "1 2\n", OutputCompare::exact, 0));
  CHECK_FALSE(outputs_match("1  2\n", "1 2", OutputCompare::exact, 0));
  CHECK(outputs_match("1  2\n\n", "1\n2", OutputCompare::whitespace, 0));
  CHECK_FALSE(outputs_match("1 2 3", "1 2", OutputCompare::whitespace, 0));
  CHECK(outputs_match("0.3333333", "0.333333333", OutputCompare::floating, 1e-6));
  CHECK(outputs_match("1e9 abc", "1000000000.0000001 abc", OutputCompare::floating, 1e-6));
  CHECK_FALSE(outputs_match("0.34", "0.33", OutputCompare::floating, 1e-6));
  CHECK_FALSE(outputs_match("nan", "0", OutputCompare::floating, 1e-6));
  CHECK_FALSE(outputs_match("abc", "abd", OutputCompare::floating, 1e-6));
}

TEST_CASE("code checker: code extraction") {
  CHECK(extract_code("think\n```python\nx = 1\n```\nmore\n```py\ny = 2\n```\n", CodeExtract::automatic) == "y = 2\n");
  CHECK(extract_code("```text\nno\n```", CodeExtract::automatic) == "```text\nno\n```");
  CHECK(extract_code("def f(): pass", CodeExtract::fenced).empty());
  CHECK(extract_code("```python\nx\n```", CodeExtract::raw) == "```python\nx\n```");
}

TEST_CASE("code checker: stdin/stdout cases") {
  auto& sb = *shared_sandbox();
  auto o = fast_options();
  std::vector<IoCase> cases{{"1 2\n", "3\n"}, {"5 7\n", "12"}, {"10 -3\n", "7\n"}};
  auto good = run_io_tests(sb, "a, b = map(int, input().split())\nprint(a + b)\n", cases, o);
  CHECK(good.verdict == Verdict::passed);
  CHECK(good.passed == 3);
  auto wrong = run_io_tests(sb, "a, b = map(int, input().split())\nprint(a + b if a < 10 else 0)\n", cases, o);
  CHECK(wrong.verdict == Verdict::wrong_answer);
  CHECK(wrong.passed == 2);
  auto crash = run_io_tests(sb, "raise ValueError('boom')\n", cases, o);
  CHECK(crash.verdict == Verdict::runtime_error);
  CHECK(crash.passed == 0);
  o.compare = OutputCompare::floating;
  auto flt = run_io_tests(sb, "print(1/3)\n", {{"", "0.333333"}}, o);
  CHECK(flt.verdict == Verdict::passed);
  o.compare = OutputCompare::exact;
  CHECK(run_io_tests(sb, "print(1/3)\n", {{"", "0.333333"}}, o).verdict == Verdict::wrong_answer);
  // Printing the expected output of another case, or exiting 0 without output, cannot pass.
  CHECK(run_io_tests(sb, "import sys; sys.exit(0)\n", cases, fast_options()).passed == 0);
  require_no_leftovers(sb);
}

TEST_CASE("code checker: HumanEval canonical solutions pass, `pass` bodies fail" *
          r1::test::needs_shared("data/humaneval/HumanEval.jsonl")) {
  auto problems = load_humaneval();
  REQUIRE(problems.size() == 164);
  auto sb = shared_sandbox();
  auto o = fast_options();
  o.timeout_ms = 20000;  // generous: the machine may be shared; a canonical run takes ~20 ms
  o.cpu_seconds = 10;
  std::mutex m;
  std::vector<std::string> wrong_pass, wrong_fail;
  auto t0 = Clock::now();
  parallel_for(problems.size() * 2, sb->slots(), [&](size_t k) {
    const Problem& p = problems[k / 2];
    bool canonical = k % 2 == 0;
    std::string code = p.prompt + (canonical ? p.solution : "    pass\n");
    CodeResult r = run_assert_tests(*sb, code, p.test, p.entry, o);
    std::lock_guard lk(m);
    if (canonical && r.verdict != Verdict::passed)
      wrong_fail.push_back(p.task_id + ": " + verdict_name(r.verdict) + " " + std::to_string(r.passed) + "/" +
                           std::to_string(r.tests) + " " + r.detail);
    if (!canonical && (r.verdict == Verdict::passed || r.verdict == Verdict::sandbox_error || r.tests == 0))
      wrong_pass.push_back(p.task_id + ": " + verdict_name(r.verdict));
  });
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  MESSAGE("HumanEval: 164 canonical + 164 `pass` bodies in " << secs << " s on " << sb->slots() << " slots");
  for (const auto& s : wrong_fail) MESSAGE("canonical failed: " << s);
  for (const auto& s : wrong_pass) MESSAGE("`pass` body not failed: " << s);
  CHECK(wrong_fail.empty());
  CHECK(wrong_pass.empty());
  require_no_leftovers(*sb);
}

TEST_CASE("code checker: every program of the adversarial corpus is contained and scores 0, honest ones 1") {
  auto sb = shared_sandbox();
  r1::test::HostCanaries host;
  CodeOptions o = fast_options();
  o.timeout_ms = 2000;  // honest runs take ~0.1 s; a hostile one may time out under load, and still scores 0
  auto checker = make_code_checker(sb, o);
  auto corpus = r1::test::attack_corpus(host.fill());
  REQUIRE(corpus.size() >= 70);
  std::map<std::string, int> by_verdict;
  for (const auto& a : corpus) {
    auto t0 = Clock::now();
    auto r = checker->check(a.sample, r1::rewards::Deadline());
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const std::string verdict = r.reason.substr(0, r.reason.find(':'));
    INFO(a.id << ": " << r.reason << " (" << secs << " s)");
    CHECK(r.score == doctest::Approx(a.score));
    if (a.score < 1 && !a.verdicts.empty() && verdict != "timeout")
      CHECK(std::find(a.verdicts.begin(), a.verdicts.end(), verdict) != a.verdicts.end());
    ++by_verdict[verdict];
    require_no_leftovers(*sb);
  }
  std::string counts;
  for (const auto& [v, n] : by_verdict) counts += " " + v + " " + std::to_string(n);
  MESSAGE(corpus.size() << " samples:" << counts);
  host.check_untouched();
}

TEST_CASE("sandbox: the seccomp filter denies tracing another process and reading its memory") {
  RunSpec s;
  s.args = {"-c",
            "import ctypes, os, errno\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "r = [libc.ptrace(0, 0, 0, 0), ctypes.get_errno()]\n"                         // PTRACE_TRACEME
            "r += [libc.syscall(310, os.getpid(), 0, 0, 0, 0, 0), ctypes.get_errno()]\n"  // process_vm_readv
            "r += [libc.syscall(425, 8, 0), ctypes.get_errno()]\n"                        // io_uring_setup
            "r += [libc.unshare(0x10000000), ctypes.get_errno()]\n"                       // CLONE_NEWUSER
            "print(r == [-1, errno.EPERM] * 4, r)\n"};
  auto r = shared_sandbox()->run(s);
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("True", 0) == 0);
  CHECK(std::find(seccomp_denied().begin(), seccomp_denied().end(), "process_vm_readv") != seccomp_denied().end());
}

TEST_CASE("sandbox: /dev is read-only, and runs work with a small open-file limit in the host process") {
  RunSpec s;
  s.args = {
      "-c",
      "import os\ntry:\n    open('/dev/big', 'wb').write(b'0' * (1 << 20))\n    print('wrote')\n"
      "except OSError as e:\n    print('refused', e.errno)\nopen('/dev/null', 'w').write('x')\nprint('null ok')\n"};
  auto r = shared_sandbox()->run(s);
  INFO(r.out << r.err);
  CHECK(r.out.find("refused 30") != std::string::npos);  // EROFS
  CHECK(r.out.find("null ok") != std::string::npos);
  // Descriptors are moved without assuming room above fd 1000: a limit of 64 in the host works.
  struct rlimit old {};
  ::getrlimit(RLIMIT_NOFILE, &old);
  struct rlimit low = old;
  low.rlim_cur = 64;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  auto ok = shared_sandbox()->run(s);
  ::setrlimit(RLIMIT_NOFILE, &old);
  CHECK(ok.ending == Ending::exited);
  CHECK(ok.exit_code == 0);
  CHECK_MESSAGE(ok.out.find("null ok") != std::string::npos, ok.detail << ok.err);
}

TEST_CASE("code checker: honest and partly wrong solutions in each test style") {
  CHECK(run_add("def add(a, b):\n    return a + b\n").verdict == Verdict::passed);
  auto partial = run_add("def add(a, b):\n    return 3\n");
  CHECK(partial.verdict == Verdict::wrong_answer);
  CHECK(partial.passed == 1);
  auto mbpp = run_assert_tests(*shared_sandbox(), "def add(a, b):\n    return 3\n",
                               "assert add(1, 2) == 3\nassert add(2, 2) == 4\n", "", fast_options());
  CHECK(mbpp.tests == 2);
  CHECK(mbpp.passed == 1);
  // A test that expects an exception sees the solution's exception type.
  auto raises = run_assert_tests(*shared_sandbox(), "def add(a, b):\n    raise ValueError('no')\n",
                                 "def check(candidate):\n    try:\n        candidate(1, 2)\n        assert False\n"
                                 "    except ValueError:\n        assert True\n",
                                 "add", fast_options());
  CHECK(raises.verdict == Verdict::passed);
}

TEST_CASE("code checker: a built-in of the one reward factory, with its code.* options") {
  r1::rewards::RewardsConfig cfg;
  cfg.deadline_ms = 20000;
  cfg.threads = 2;
  r1::rewards::RewardEntry e;
  e.checker = "code";
  e.code.emplace();
  e.code->timeout_ms = 3000;
  e.code->compare = OutputCompare::whitespace;
  cfg.checkers.push_back(e);
  auto reg = r1::rewards::make_registry(cfg, r1::rewards::sandbox_from(shared_sandbox()));
  CHECK(reg.has("code"));
  r1::rewards::Scorer scorer(cfg, reg);
  std::vector<r1::rewards::Sample> batch(3);
  batch[0].completion = "Here:\n```python\ndef add(a, b):\n    return a + b\n```";
  batch[0].reference["test"] = kAddTest;
  batch[0].reference["entry_point"] = "add";
  batch[1].completion = "```python\nprint(sum(map(int, input().split())))\n```";
  batch[1].reference["tests"] =
      boost::json::parse(R"([{"input": "1 2", "output": "3"}, {"input": "4 4", "output": "9"}])");
  batch[2].completion = "no code";
  batch[2].reference["nothing"] = 1;
  auto scored = scorer.score(batch);
  REQUIRE(scored.size() == 3);
  CHECK(scored[0].score == doctest::Approx(1.0));
  CHECK(scored[1].score == doctest::Approx(0.5));
  CHECK(scored[1].parts[0].result.reason.rfind("wrong_answer: 1/2", 0) == 0);
  CHECK(scored[2].status == r1::rewards::Status::error);

  // A built-in takes no options JSON; its options live in code.*, read and checked like any table.
  e.options = R"({"timeout_ms": 1})";
  r1::rewards::RewardsConfig bad = cfg;
  bad.checkers = {e};
  CHECK_THROWS_WITH_AS(r1::rewards::Scorer(bad, reg), doctest::Contains("takes its options in the code.* table"),
                       r1::ConfigError);
  auto t = r1::cfg::parse_string("[[checkers]]\nchecker = \"code\"\ncode.timeout_msx = 1\n", "c.toml");
  CHECK_THROWS_WITH_AS(r1::cfg::from_table<r1::rewards::RewardsConfig>(t),
                       doctest::Contains("did you mean 'checkers[0].code.timeout_ms'"), r1::ConfigError);
}
