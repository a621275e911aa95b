// Soak: `r1 rewards serve` under R1_SOAK_SECONDS (default 120) of mixed traffic from 64 keep-alive
// connections on 127.0.0.1: valid batches, hostile math (numbers past the float range, glued
// digits), slow senders, malformed JSON, declared bodies over the limit, bytes that are not HTTP,
// health probes with query strings, 900 KiB bodies, and code samples in the sandbox. Every request
// must get its expected status (valid ones 200 with the right scores), the server must not crash,
// and its RSS after the traffic must be within 10% of its RSS after one warm-up round.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "test_paths.hpp"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kConnections = 64;
constexpr int kBigConnections = 4;  // the only ones sending 900 KiB bodies: 3.6 MiB < max_buffered_mb
constexpr size_t kBigBody = 900 * 1024;

// `r1 rewards serve` on a free port, stopped with SIGTERM.
struct ServeProcess {
  pid_t pid = -1;
  uint16_t port = 0;
  std::thread drain;
  std::string log;
  explicit ServeProcess(const std::string& config) {
    int out[2];
    REQUIRE(::pipe(out) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    const std::string exe = (r1::test::binary_dir() / "r1").string();
    std::vector<std::string> args{exe, "rewards", "serve", "--config", config, "--port", "0"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE(::posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    std::string line;
    char c;
    while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
    drain = std::thread([fd = out[0], this] {  // later lines of stderr, kept for a failure message
      for (char b[4096]; true;) {
        const ssize_t n = ::read(fd, b, sizeof b);
        if (n <= 0) break;
        log.append(b, static_cast<size_t>(n));
      }
      ::close(fd);
    });
    const auto at = line.find("http://127.0.0.1:");
    REQUIRE_MESSAGE(at != std::string::npos, line);
    port = static_cast<uint16_t>(std::stoi(line.substr(at + 17)));
  }
  ~ServeProcess() {
    if (pid > 0) stop();
  }
  bool alive() const { return ::kill(pid, 0) == 0; }
  // "VmRSS" or "VmHWM" of /proc/PID/status, in KiB.
  int64_t status_kb(const std::string& key) const {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    for (std::string k; f >> k;) {
      if (k == key + ":") {
        int64_t v = 0;
        f >> v;
        return v;
      }
    }
    return -1;
  }
  int stop() {
    ::kill(pid, SIGTERM);
    int st = 0;
    ::waitpid(pid, &st, 0);
    pid = -1;
    drain.join();
    return st;
  }
};

struct Response {
  int status = 0;  // 0: no response (connection closed or timed out)
  std::string body;
  bool close = false;  // "Connection: close"
};

// One blocking keep-alive connection; it reconnects when the server closed the last one.
class Conn {
 public:
  explicit Conn(uint16_t port) : port_(port) {}
  ~Conn() { drop(); }
  Response exchange(const std::vector<std::string>& pieces, std::chrono::milliseconds gap = 0ms) {
    if (fd_ < 0) open();
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (i > 0) std::this_thread::sleep_for(gap);
      if (!send_all(pieces[i])) break;  // the server may answer before reading everything (413)
    }
    Response r = read_response();
    if (r.status == 0 || r.close) drop();
    return r;
  }

 private:
  void open() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{20, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) drop();
  }
  void drop() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }
  bool send_all(const std::string& s) {
    for (size_t off = 0; fd_ >= 0 && off < s.size();) {
      const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return fd_ >= 0;
  }
  Response read_response() {
    Response r;
    char tmp[65536];
    size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(tmp, sizeof tmp)) return r;
    const std::string head = buf_.substr(0, head_end);
    r.status = std::atoi(head.c_str() + 9);
    r.close = head.find("Connection: close") != std::string::npos;
    size_t len = 0;
    if (auto cl = head.find("Content-Length: "); cl != std::string::npos) len = std::stoul(head.substr(cl + 16));
    while (buf_.size() < head_end + 4 + len)
      if (!fill(tmp, sizeof tmp)) return Response{};
    r.body = buf_.substr(head_end + 4, len);
    buf_.erase(0, head_end + 4 + len);
    return r;
  }
  bool fill(char* tmp, size_t n) {
    if (fd_ < 0) return false;
    const ssize_t got = ::read(fd_, tmp, n);
    if (got <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(got));
    return true;
  }
  uint16_t port_;
  int fd_ = -1;
  std::string buf_;
};

std::string post(const std::string& target, const std::string& body) {
  return "POST " + target +
         " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

boost::json::object math_sample(const std::string& answer, const std::string& given) {
  return {{"completion", "<think>x</think> The answer is \\boxed{" + given + "}."}, {"answer", answer}};
}

std::string samples_body(const boost::json::array& samples, const char* checker = nullptr) {
  boost::json::object o{{"samples", samples}};
  if (checker) o["checker"] = checker;
  return boost::json::serialize(o);
}

enum Kind { kValid, kHostileMath, kSlow, kMalformed, kOversize, kGarbage, kHealth, kBig, kCode, kKinds };
const char* kKindNames[kKinds] = {"valid",    "hostile math", "slow",    "malformed", "oversize",
                                  "not HTTP", "health",       "900 KiB", "code"};

struct Outcome {
  int expected = 200;
  Response got;
  bool scores_ok = true;
};

// A valid batch of 8: even samples right (math part 1), odd ones wrong (0).
Outcome valid(Conn& c, std::mt19937& rng, const std::string& pad = "") {
  boost::json::array s;
  for (int i = 0; i < 8; ++i) {
    const int a = static_cast<int>(rng() % 1000);
    s.push_back(math_sample(std::to_string(a), std::to_string(i % 2 ? a + 1 : a)));
  }
  Outcome o;
  o.got = c.exchange({post("/v1/score", samples_body(s) + pad)});
  if (o.got.status != 200) return o;
  const auto res = boost::json::parse(o.got.body).as_object().at("results").as_array();
  o.scores_ok = res.size() == 8;
  for (size_t i = 0; o.scores_ok && i < res.size(); ++i)
    o.scores_ok = res[i].at("parts").at("math").to_number<double>() == (i % 2 ? 0 : 1);
  return o;
}

Outcome send_kind(Kind k, Conn& c, std::mt19937& rng) {
  Outcome o;
  switch (k) {
    case kValid: return valid(c, rng);
    case kBig: return valid(c, rng, std::string(kBigBody, ' '));
    case kHostileMath: {
      std::string glued;
      for (int i = 0; i < 20000; ++i) glued += "a1";
      boost::json::array s{math_sample("10^{10^{20}}", "10^{10^{21}}"), math_sample("10000000!", "10000000!+1"),
                           boost::json::object{{"completion", glued}, {"answer", "7"}}};
      o.got = c.exchange({post("/v1/score", samples_body(s))});
      if (o.got.status != 200) return o;
      const boost::json::value v = boost::json::parse(o.got.body);
      for (const auto& r : v.at("results").as_array())
        o.scores_ok = o.scores_ok && r.at("parts").at("math").to_number<double>() == 0;
      return o;
    }
    case kSlow: {
      const std::string req = post("/v1/score", samples_body({math_sample("3", "3")}));
      const size_t q = req.size() / 4;
      o.got = c.exchange({req.substr(0, q), req.substr(q, q), req.substr(2 * q, q), req.substr(3 * q)}, 60ms);
      return o;
    }
    case kMalformed:
      o.expected = 400;
      o.got = c.exchange({post("/v1/score", "{\"samples\": [")});
      return o;
    case kOversize:
      o.expected = 413;
      o.got = c.exchange({"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n{"});
      return o;
    case kGarbage:
      o.expected = 400;
      o.got = c.exchange({std::string("\x16\x03\x01\xff GARBAGE\r\n\r\n", 20)});
      return o;
    case kHealth: o.got = c.exchange({"GET /healthz?soak=1 HTTP/1.1\r\nHost: x\r\n\r\n"}); return o;
    case kCode: {
      boost::json::object s{{"completion", "def add(a, b):\n    return a + b\n"},
                            {"test", "def check(candidate):\n    assert candidate(2, 3) == 5\n"},
                            {"entry_point", "add"}};
      o.got = c.exchange({post("/v1/score", samples_body({s}, "code"))});
      if (o.got.status == 200)
        o.scores_ok = boost::json::parse(o.got.body).at("results").at(0).at("score").to_number<double>() == 1;
      return o;
    }
    default: return o;
  }
}

Kind pick(std::mt19937& rng, int conn) {
  const int r = static_cast<int>(rng() % 100);
  if (conn < kBigConnections && r < 20) return kBig;
  if (r < 45) return kValid;
  if (r < 55) return kHostileMath;
  if (r < 62) return kSlow;
  if (r < 72) return kMalformed;
  if (r < 79) return kOversize;
  if (r < 86) return kGarbage;
  if (r < 98) return kHealth;
  return kCode;
}

struct Tally {
  std::mutex m;
  int64_t sent[kKinds] = {}, wrong[kKinds] = {};
  std::vector<double> valid_ms;
  std::string first_wrong;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

TEST_CASE("soak: r1 rewards serve under 64 connections of mixed traffic keeps serving and returns its memory") {
  const char* env = std::getenv("R1_SOAK_SECONDS");
  const int seconds = env ? std::atoi(env) : 120;
  const auto cfg_path = std::filesystem::temp_directory_path() / ("r1_soak_" + std::to_string(::getpid()) + ".toml");
  std::ofstream(cfg_path) << "[service]\nio_threads = 2\nmax_inflight = 4\nmax_queue = 256\nmax_body_kb = 1024\n"
                             "max_buffered_mb = 8\nread_timeout_ms = 5000\nrequest_timeout_ms = 30000\n"
                             "[sandbox]\nparallelism = 2\n[rewards]\nthreads = 2\ndeadline_ms = 2000\n"
                             "[[rewards.checkers]]\nchecker = \"math\"\n"
                             "[[rewards.checkers]]\nchecker = \"format\"\nweight = 0.1\n";
  ServeProcess srv(cfg_path.string());
  Tally tally;
  auto record = [&](Kind k, const Outcome& o, double ms) {
    std::lock_guard lk(tally.m);
    tally.sent[k]++;
    if (o.got.status != o.expected || !o.scores_ok) {
      if (tally.first_wrong.empty())
        tally.first_wrong =
            std::string(kKindNames[k]) + ": status " + std::to_string(o.got.status) + " " + o.got.body.substr(0, 200);
      tally.wrong[k]++;
    }
    if (k == kValid) tally.valid_ms.push_back(ms);
  };
  {  // Warm-up: each kind once, then the starting RSS.
    Conn c(srv.port);
    std::mt19937 rng(1);
    for (int k = 0; k < kKinds; ++k) record(static_cast<Kind>(k), send_kind(static_cast<Kind>(k), c, rng), 0);
  }
  std::this_thread::sleep_for(500ms);
  const int64_t rss0 = srv.status_kb("VmRSS");
  const auto until = Clock::now() + std::chrono::seconds(seconds);
  std::vector<std::thread> clients;
  for (int i = 0; i < kConnections; ++i)
    clients.emplace_back([&, i] {
      Conn c(srv.port);
      std::mt19937 rng(static_cast<uint32_t>(100 + i));
      while (Clock::now() < until) {
        const Kind k = pick(rng, i);
        const auto t0 = Clock::now();
        Outcome o = send_kind(k, c, rng);
        record(k, o, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
    });
  for (auto& t : clients) t.join();
  std::this_thread::sleep_for(1s);
  const int64_t rss1 = srv.status_kb("VmRSS"), hwm = srv.status_kb("VmHWM");
  const bool alive = srv.alive();
  int64_t total = 0, wrong = 0;
  std::string counts;
  for (int k = 0; k < kKinds; ++k) {
    total += tally.sent[k];
    wrong += tally.wrong[k];
    counts += std::string(" ") + kKindNames[k] + " " + std::to_string(tally.sent[k]) + ";";
  }
  MESSAGE(total << " requests in " << seconds << " s from " << kConnections << " connections:" << counts
                << " valid p50 " << percentile(tally.valid_ms, 0.5) << " ms, p99 " << percentile(tally.valid_ms, 0.99)
                << " ms; RSS " << rss0 / 1024.0 << " MiB after warm-up, " << rss1 / 1024.0 << " MiB after, peak "
                << hwm / 1024.0 << " MiB");
  CHECK(alive);
  CHECK_MESSAGE(wrong == 0, wrong << " unexpected answers; first: " << tally.first_wrong);
  for (int k = 0; k < kKinds; ++k) CHECK_MESSAGE(tally.sent[k] > 0, kKindNames[k]);
  CHECK(rss1 <= rss0 * 11 / 10);
  const int st = srv.stop();
  CHECK_MESSAGE((WIFEXITED(st) && WEXITSTATUS(st) == 0), "status " << st << ": " << srv.log.substr(0, 2000));
  std::filesystem::remove(cfg_path);
}
