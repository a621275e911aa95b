// The reward service over loopback (127.0.0.1 only, bounded loops): scoring and metrics,
// concurrent clients, malformed and oversize requests, a slow client trickling bytes, a checker
// that times out, a request deadline, graceful shutdown, restart while clients retry, and the
// in-process vs remote backends agreeing.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <boost/json.hpp>

#include "attack_corpus.hpp"
#include "common/error.hpp"
#include "rewards/backend.hpp"
#include "rewards/sandbox/code_checker.hpp"
#include "rewards/service/client.hpp"
#include "rewards/service/handler.hpp"
#include "rewards/service/service.hpp"
#include "test_paths.hpp"

using namespace r1;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Sleeps metadata.sleep_ms and ignores its deadline: the scorer's watchdog must handle it.
class SleepyChecker final : public rewards::Checker {
 public:
  rewards::CheckResult check(const rewards::Sample& s, const rewards::Deadline&) const override {
    int64_t ms = 0;
    if (auto* v = s.metadata.if_contains("sleep_ms"); v && v->is_int64()) ms = v->as_int64();
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    rewards::CheckResult r;
    r.score = 1.0;
    r.reason = "slept " + std::to_string(ms) + " ms";
    return r;
  }
};

// Its uids are allocated (uid_base = 0): test_sandbox runs fork bombs at the same time under ctest,
// and a process limit is per uid, so a shared range would let that suite starve this one.
std::shared_ptr<sandbox::Sandbox> test_sandbox() {
  static auto sb = [] {
    sandbox::SandboxOptions o;
    o.parallelism = 2;
    return std::make_shared<sandbox::Sandbox>(o);
  }();
  return sb;
}

service::ServiceConfig base_config() {
  service::ServiceConfig c;
  c.service.port = 0;
  c.service.io_threads = 2;
  c.service.max_inflight = 4;
  c.service.max_queue = 64;
  c.service.max_body_kb = 64;
  c.service.max_batch = 128;
  c.service.read_timeout_ms = 1000;
  c.service.request_timeout_ms = 10000;
  c.rewards.threads = 2;
  c.rewards.deadline_ms = 300;
  rewards::RewardEntry e;
  e.checker = "math";
  c.rewards.checkers = {e};
  return c;
}

rewards::Registry test_registry(const service::ServiceConfig& c) {
  auto reg = rewards::make_registry(c.rewards, rewards::sandbox_from(test_sandbox()));
  reg.add("sleepy", [](const rewards::RewardEntry&) { return std::make_shared<SleepyChecker>(); });
  return reg;
}

service::ClientOptions client_for(uint16_t port) {
  service::ClientOptions o;
  o.endpoint = "http://127.0.0.1:" + std::to_string(port);
  o.timeout_ms = 10000;
  o.retries = 2;
  o.backoff_ms = 20;
  return o;
}

rewards::Sample math_sample(int answer, int given) {
  rewards::Sample s;
  s.prompt = "What is " + std::to_string(answer) + "?";
  s.completion = "The answer is \\boxed{" + std::to_string(given) + "}.";
  s.reference["answer"] = std::to_string(answer);
  return s;
}

std::string score_body(size_t n, const std::string& checker = "") {
  boost::json::array a;
  for (size_t i = 0; i < n; ++i)
    a.push_back(service::sample_to_json(math_sample(static_cast<int>(i), static_cast<int>(i))));
  boost::json::object o{{"samples", a}};
  if (!checker.empty()) o["checker"] = checker;
  return boost::json::serialize(o);
}

std::string error_of(const std::string& body) {
  auto v = boost::json::parse(body);
  return std::string(v.as_object().at("error").as_string());
}

// A raw TCP connection to the server, for byte-level misbehaviour.
struct Raw {
  int fd = -1;
  explicit Raw(uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Raw() { ::close(fd); }
  void send(const std::string& s) { (void)!::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }
  std::string recv_all() {
    std::string out;
    char buf[4096];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
      if (out.find("\r\n\r\n") != std::string::npos) {
        auto cl = out.find("Content-Length: ");
        if (cl != std::string::npos) {
          size_t len = std::stoul(out.substr(cl + 16));
          if (out.size() >= out.find("\r\n\r\n") + 4 + len) break;
        }
      }
    }
    return out;
  }
};

// The value of an unlabelled Prometheus sample in /metrics text.
double metric(const std::string& text, const std::string& name) {
  auto at = text.find("\n" + name + " ");
  REQUIRE_MESSAGE(at != std::string::npos, "no metric " << name);
  return std::stod(text.substr(at + name.size() + 2));
}

std::string post_head(size_t content_length) {
  return "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(content_length) + "\r\n\r\n";
}

// A /v1/score body of exactly `size` bytes: two samples padded with spaces.
std::string padded_body(size_t size) {
  std::string b = score_body(2);
  REQUIRE(size >= b.size());
  return b + std::string(size - b.size(), ' ');
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

}  // namespace

TEST_CASE("service: scores batches, serves health and metrics") {
  auto cfg = base_config();
  service::Server srv(cfg, test_registry(cfg));
  srv.start();
  service::RewardClient client(client_for(srv.port()));
  CHECK(client.healthy());

  std::vector<rewards::Sample> batch{math_sample(4, 4), math_sample(7, 8), math_sample(10, 10)};
  auto out = client.score(batch);
  REQUIRE(out.size() == 3);
  CHECK(out[0].score == doctest::Approx(1.0));
  CHECK(out[1].score == doctest::Approx(0.0));
  CHECK(out[2].score == doctest::Approx(1.0));
  REQUIRE(out[0].parts.size() == 1);
  CHECK(out[0].parts[0].name == "math");
  CHECK_FALSE(out[0].parts[0].result.reason.empty());

  // One named checker, the code checker in the sandbox.
  rewards::Sample code;
  code.completion = "```python\ndef add(a, b):\n    return a + b\n```";
  code.reference["test"] = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n";
  code.reference["entry_point"] = "add";
  auto cs = client.score({code}, "code");
  REQUIRE(cs.size() == 1);
  CHECK(cs[0].score == doctest::Approx(1.0));
  CHECK(cs[0].parts[0].result.reason.rfind("passed: 2/2", 0) == 0);

  auto [st, text] = client.request("GET", "/metrics");
  CHECK(st == 200);
  CHECK(text.find("r1_requests_total{route=\"/v1/score\",code=\"200\"} 2") != std::string::npos);
  CHECK(text.find("r1_request_duration_seconds_bucket{le=\"+Inf\"}") != std::string::npos);
  CHECK(text.find("r1_checks_total{checker=\"math\",status=\"ok\"} 3") != std::string::npos);
  CHECK(text.find("r1_sandbox_verdicts_total{verdict=\"passed\"}") != std::string::npos);
  CHECK(text.find("r1_check_timeouts_total 0") != std::string::npos);
  srv.stop();
}

TEST_CASE("service: concurrent clients") {
  auto cfg = base_config();
  service::Server srv(cfg, test_registry(cfg));
  srv.start();
  auto opts = client_for(srv.port());
  opts.connections = 4;
  service::RewardClient shared(opts);
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 12; ++t)
    ts.emplace_back([&, t] {
      service::RewardClient own(opts);
      for (int i = 0; i < 15; ++i) {
        auto& c = (t % 2) ? own : shared;
        std::vector<rewards::Sample> b;
        for (int k = 0; k < 8; ++k) b.push_back(math_sample(t * 100 + k, k % 2 ? t * 100 + k : -1));
        try {
          auto r = c.score(b);
          bool right = r.size() == 8;
          for (int k = 0; k < 8 && right; ++k) right = r[static_cast<size_t>(k)].score == (k % 2 ? 1.0 : 0.0);
          (right ? ok : bad)++;
        } catch (const std::exception&) {
          bad++;
        }
      }
    });
  for (auto& t : ts) t.join();
  CHECK(ok == 12 * 15);
  CHECK(bad == 0);
  srv.stop();
}

// Error messages quote the request target, whose bytes need not be UTF-8 (fuzz/fuzz_service.cpp).
TEST_CASE("service: an error quoting request bytes that are not UTF-8 is still valid JSON") {
  auto cfg = base_config();
  service::Handler h(cfg, rewards::Registry::with_builtins(), nullptr);
  for (std::string target : {"/v1\xff/score", "/\xc3", "/nope?\xed\xa0\x80"}) {
    CAPTURE(target);
    const auto r = service::answer_raw(h, "PUT " + target + " HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    CHECK(r.status == 404);
    boost::system::error_code ec;
    const auto v = boost::json::parse(r.body, ec);
    REQUIRE_FALSE(ec);
    CHECK(std::string(v.at("error").as_string()).find("no such endpoint") == 0);
  }
}

TEST_CASE("service: malformed, unknown and oversize requests get 4xx JSON errors") {
  auto cfg = base_config();
  service::Server srv(cfg, test_registry(cfg));
  srv.start();
  service::RewardClient c(client_for(srv.port()));
  struct Case {
    std::string method, target, body;
    int status;
    std::string error_has;
  };
  std::vector<Case> cases{
      {"POST", "/v1/score", "{\"samples\": [", 400, "malformed JSON"},
      {"POST", "/v1/score", "[1, 2]", 400, "JSON object"},
      {"POST", "/v1/score", "{}", 400, "missing \"samples\""},
      {"POST", "/v1/score", "{\"samples\": {}}", 400, "must be an array"},
      {"POST", "/v1/score", "{\"samples\": []}", 400, "empty"},
      {"POST", "/v1/score", "{\"samples\": [{\"prompt\": \"x\"}]}", 400, "samples[0]: missing \"completion\""},
      {"POST", "/v1/score", "{\"samples\": [{\"completion\": 5}]}", 400, "must be a string"},
      {"POST", "/v1/score", score_body(1, "nope"), 400, "unknown checker 'nope'"},
      {"POST", "/v1/score", "{\"samples\": [{\"completion\": \"x\"}], \"checker\": 3}", 400, "must be a string"},
      {"POST", "/v1/score", score_body(129), 413, "more than 128 samples"},
      {"POST", "/v1/score", std::string(100 * 1024, ' '), 413, "over 64 KiB"},
      {"GET", "/v1/score", "", 405, "POST"},
      {"GET", "/nope", "", 404, "no such endpoint"},
      {"GET", "/nope?healthz", "", 404, "no such endpoint: /nope "},
      {"POST", "/v1/score", "{\"samples\": [{\"completion\": \"x\", \"completion_tokens\": -1}]}", 400,
       "samples[0]: \"completion_tokens\" must be a non-negative integer"},
      {"POST", "/v1/score", "{\"samples\": [{\"completion\": \"x\", \"completion_tokens\": 1e3}]}", 400,
       "non-negative integer"},
  };
  for (const auto& k : cases) {
    auto [st, body] = c.request(k.method, k.target, k.body);
    INFO(k.target << " " << k.body.substr(0, 60) << " -> " << st << " " << body);
    CHECK(st == k.status);
    CHECK(error_of(body).find(k.error_has) != std::string::npos);
    CHECK(c.healthy());  // and it keeps serving
  }
  auto bad = base_config();
  // A retrying client does not retry a 4xx.
  auto opts = client_for(srv.port());
  opts.retries = 5;
  service::RewardClient rc(opts);
  CHECK_THROWS_AS(rc.score({math_sample(1, 1)}, "nope"), service::RequestError);
  CHECK(rc.stats().retries == 0);

  // A query string is ignored: every route answers with one.
  CHECK(c.request("GET", "/healthz?probe=1", "").first == 200);
  CHECK(c.request("GET", "/metrics?x", "").first == 200);
  CHECK(c.request("POST", "/v1/score?trace=abc", score_body(2)).first == 200);

  // Garbage that is not HTTP at all.
  {
    Raw raw(srv.port());
    raw.send("THIS IS NOT HTTP\r\n\r\n");
    std::string resp = raw.recv_all();
    CHECK(resp.rfind("HTTP/1.1 400", 0) == 0);
  }
  CHECK(c.healthy());
  srv.stop();
}

TEST_CASE("service: a slow client trickling bytes does not block the others") {
  auto cfg = base_config();
  cfg.service.io_threads = 1;  // even with a single I/O thread
  service::Server srv(cfg, test_registry(cfg));
  srv.start();
  const std::string body = score_body(2);
  const std::string req = "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  std::atomic<bool> trickling{true};
  std::string trickle_reply;
  std::thread slow([&] {
    Raw raw(srv.port());
    for (size_t i = 0; i < req.size() && i < 30; ++i) {  // 30 bytes over ~1.5 s: past read_timeout_ms
      raw.send(req.substr(i, 1));
      std::this_thread::sleep_for(50ms);
    }
    trickle_reply = raw.recv_all();  // the server hangs up on it
    trickling = false;
  });
  service::RewardClient c(client_for(srv.port()));
  int served = 0;
  double worst = 0;
  while (trickling && served < 200) {
    auto t0 = Clock::now();
    auto r = c.score({math_sample(3, 3)});
    worst = std::max(worst, std::chrono::duration<double>(Clock::now() - t0).count());
    CHECK(r[0].score == doctest::Approx(1.0));
    ++served;
    std::this_thread::sleep_for(10ms);
  }
  slow.join();
  CHECK(served >= 10);
  CHECK(worst < 0.5);
  CHECK(trickle_reply.find("HTTP/1.1 200") == std::string::npos);  // cut off, never served
  srv.stop();
}

TEST_CASE("service: a checker that times out, and the request deadline") {
  auto cfg = base_config();
  rewards::RewardEntry e;
  e.checker = "sleepy";
  cfg.rewards.checkers = {e};
  cfg.rewards.deadline_ms = 200;
  service::Server srv(cfg, test_registry(cfg));
  srv.start();
  service::RewardClient c(client_for(srv.port()));
  rewards::Sample s = math_sample(1, 1);
  s.metadata["sleep_ms"] = 1500;
  rewards::Sample quick = math_sample(1, 1);
  auto t0 = Clock::now();
  auto r = c.score({s, quick});
  CHECK(Clock::now() - t0 < 1400ms);  // the watchdog gave up at the deadline, not after the sleep
  REQUIRE(r.size() == 2);
  CHECK(r[0].status == rewards::Status::timeout);
  CHECK(r[0].score == 0.0);
  CHECK(r[1].status == rewards::Status::ok);
  CHECK(r[1].score == doctest::Approx(1.0));
  auto [st, text] = c.request("GET", "/metrics");
  CHECK(text.find("r1_checks_total{checker=\"sleepy\",status=\"timeout\"} 1") != std::string::npos);
  CHECK(text.find("r1_check_timeouts_total 1") != std::string::npos);
  srv.stop();

  // A request deadline shorter than the scoring: 504, and the server carries on.
  auto cfg2 = base_config();
  cfg2.rewards.checkers = {e};
  cfg2.rewards.deadline_ms = 5000;
  cfg2.service.request_timeout_ms = 300;
  service::Server srv2(cfg2, test_registry(cfg2));
  srv2.start();
  service::RewardClient c2(client_for(srv2.port()));
  s.metadata["sleep_ms"] = 1000;
  boost::json::object body{{"samples", boost::json::array{service::sample_to_json(s)}}};
  auto [st2, text2] = c2.request("POST", "/v1/score", boost::json::serialize(body));
  CHECK(st2 == 504);
  CHECK(error_of(text2).find("deadline") != std::string::npos);
  CHECK(c2.healthy());
  srv2.stop();
}

TEST_CASE("service: graceful shutdown finishes requests in flight") {
  auto cfg = base_config();
  rewards::RewardEntry e;
  e.checker = "sleepy";
  cfg.rewards.checkers = {e};
  cfg.rewards.deadline_ms = 5000;
  auto srv = std::make_unique<service::Server>(cfg, test_registry(cfg));
  srv->start();
  const uint16_t port = srv->port();
  auto opts = client_for(port);
  opts.retries = 0;
  auto pending = std::async(std::launch::async, [&] {
    service::RewardClient c(opts);
    rewards::Sample s = math_sample(1, 1);
    s.metadata["sleep_ms"] = 600;
    return c.score({s});
  });
  std::this_thread::sleep_for(200ms);  // the request is being scored
  auto t0 = Clock::now();
  srv->stop();
  CHECK(Clock::now() - t0 >= 200ms);  // it waited for the request
  auto r = pending.get();
  REQUIRE(r.size() == 1);
  CHECK(r[0].score == doctest::Approx(1.0));
  // No longer accepting.
  service::RewardClient after(opts);
  CHECK_FALSE(after.healthy());
}

TEST_CASE("service: restart while clients retry") {
  auto cfg = base_config();
  auto srv = std::make_unique<service::Server>(cfg, test_registry(cfg));
  srv->start();
  const uint16_t port = srv->port();
  cfg.service.port = port;  // the restarted server takes the same port
  auto opts = client_for(port);
  opts.retries = 30;
  opts.backoff_ms = 20;
  opts.max_backoff_ms = 200;
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::atomic<uint64_t> retries{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      service::RewardClient c(opts);
      for (int i = 0; i < 400 && !stop; ++i) {
        try {
          auto r = c.score({math_sample(i, i)});
          (r.size() == 1 && r[0].score == 1.0 ? ok : failed)++;
        } catch (const std::exception&) {
          failed++;
        }
        std::this_thread::sleep_for(5ms);
      }
      retries += c.stats().retries;
    });
  std::this_thread::sleep_for(300ms);
  srv->stop();
  srv.reset();
  std::this_thread::sleep_for(400ms);  // clients see refused connections and back off
  srv = std::make_unique<service::Server>(cfg, test_registry(cfg));
  srv->start();
  std::this_thread::sleep_for(400ms);
  stop = true;
  for (auto& t : ts) t.join();
  CHECK(failed == 0);
  CHECK(ok > 20);
  CHECK(retries > 0);
  srv->stop();
}

TEST_CASE("service: in-process and remote backends agree") {
  auto cfg = base_config();
  service::Server srv(cfg, test_registry(cfg));
  srv.start();
  auto local = rewards::make_reward_backend(cfg.rewards, rewards::sandbox_from(test_sandbox()));
  rewards::RewardsConfig remote_cfg = cfg.rewards;
  remote_cfg.endpoint = client_for(srv.port()).endpoint;
  auto remote = rewards::make_reward_backend(remote_cfg, rewards::sandbox_from(test_sandbox()));
  CHECK(local->describe() == "in-process (math)");
  CHECK(remote->describe().rfind("remote http://127.0.0.1:", 0) == 0);
  std::vector<rewards::Sample> b;
  for (int i = 0; i < 20; ++i) b.push_back(math_sample(i, i % 3 ? i : i + 1));
  auto a = local->score(b), r = remote->score(b);
  REQUIRE(a.size() == r.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].score == r[i].score);
    CHECK(a[i].parts[0].result.reason == r[i].parts[0].result.reason);
    CHECK(a[i].parts[0].result.answer == r[i].parts[0].result.answer);  // maj@k votes on it
    CHECK(!a[i].parts[0].result.answer.empty());
  }
  // The service must score the parts the config names, or accuracy would silently read nothing.
  remote_cfg.checkers[0].name = "gsm8k";
  auto mismatched = rewards::make_reward_backend(remote_cfg, rewards::sandbox_from(test_sandbox()));
  CHECK_THROWS_WITH_AS(mismatched->score(b), doctest::Contains("scores the parts (math)"), r1::Error);
  srv.stop();
}

TEST_CASE("service: config sections and the client's endpoint") {
  auto dir = std::filesystem::temp_directory_path() / ("r1-svc-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto f = dir / "serve.toml";
  std::ofstream(f) << "[service]\nport = 9123\nmax_inflight = 3\n[sandbox]\nparallelism = 2\n"
                      "[rewards]\nthreads = 1\n[[rewards.checkers]]\nchecker = \"math\"\n";
  auto c = service::load_service_config(f, {"service.max_queue=7"});
  CHECK(c.service.port == 9123);
  CHECK(c.service.max_inflight == 3);
  CHECK(c.service.max_queue == 7);
  CHECK(c.sandbox.parallelism == 2);
  CHECK(c.rewards.checkers.size() == 1);
  std::ofstream(f) << "[service]\nmax_inflightt = 3\n";
  CHECK_THROWS_AS(service::load_service_config(f), ConfigError);
  // The shipped example (docs/REWARD_SERVICE.md) reads and its composition passes every check.
  auto shipped = service::load_service_config(r1::test::source_dir() / "configs" / "serve.toml");
  CHECK(shipped.service.port == 8000);
  CHECK(shipped.rewards.checkers.size() == 2);
  CHECK_NOTHROW(rewards::check_rewards_config(shipped.rewards));

  auto run = dir / "run.toml";
  std::ofstream(run)
      << "[model]\npath = \"x\"\n[rewards]\nendpoint = \"http://10.0.0.5:8000\"\n[rewards.client]\nretries = 9\n";
  auto co = service::client_options(rewards::load_reward_setup(run).rewards);
  CHECK(co.endpoint == "http://10.0.0.5:8000");
  CHECK(co.retries == 9);
  std::ofstream(run) << "[rewards]\nendpoint = \"https://x\"\n";
  CHECK_THROWS_AS(rewards::load_reward_setup(run), ConfigError);
  std::filesystem::remove_all(dir);
}

TEST_CASE("service: request bodies held at once are bounded by max_buffered_mb (503 + Retry-After)") {
  auto cfg = base_config();
  cfg.service.max_body_kb = 1024;
  cfg.service.max_buffered_mb = 2;
  cfg.service.read_timeout_ms = 5000;
  service::Server srv(cfg, test_registry(cfg));
  srv.start();
  const size_t size = 900 * 1024;
  const std::string body = padded_body(size);
  // Two 900 KiB bodies are admitted and held half-sent; a third would pass 2 MiB.
  Raw a(srv.port()), b(srv.port());
  a.send(post_head(size) + body.substr(0, 1000));
  b.send(post_head(size) + body.substr(0, 1000));
  service::RewardClient c(client_for(srv.port()));
  for (int i = 0; i < 100 && metric(srv.metrics_text(), "r1_buffered_request_bytes") < 2.0 * size; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(metric(srv.metrics_text(), "r1_buffered_request_bytes") == doctest::Approx(2.0 * size));
  {
    Raw third(srv.port());
    third.send(post_head(size));
    std::string resp = third.recv_all();
    CHECK(resp.rfind("HTTP/1.1 503", 0) == 0);
    CHECK(resp.find("Retry-After: 1") != std::string::npos);
    CHECK(resp.find("max_buffered_mb") != std::string::npos);
  }
  CHECK(c.request("GET", "/healthz", "").first == 200);  // small requests still pass
  // The held bodies complete and are scored; their bytes go back to the budget.
  a.send(body.substr(1000));
  b.send(body.substr(1000));
  CHECK(a.recv_all().rfind("HTTP/1.1 200", 0) == 0);
  CHECK(b.recv_all().rfind("HTTP/1.1 200", 0) == 0);
  // (released when the write completes, which may be just after the client has read it)
  for (int i = 0; i < 100 && metric(srv.metrics_text(), "r1_buffered_request_bytes") > 0; ++i)
    std::this_thread::sleep_for(10ms);
  const std::string text = srv.metrics_text();
  CHECK(metric(text, "r1_buffered_request_bytes") == 0);
  CHECK(metric(text, "r1_requests_over_budget_total") == 1);
  // A chunked body is held at the body limit, a declared length over the limit gets 413 unread.
  Raw big(srv.port());
  big.send(post_head(2 << 20));
  CHECK(big.recv_all().rfind("HTTP/1.1 413", 0) == 0);
  // One body must fit the budget.
  auto bad = cfg;
  bad.service.max_buffered_mb = 1;
  bad.service.max_body_kb = 2048;
  CHECK_THROWS_AS(service::Server(bad, test_registry(bad)), ConfigError);
  srv.stop();
}

TEST_CASE("service: out of descriptors, the accept loop backs off, then serves again") {
  auto cfg = base_config();
  service::Server srv(cfg, test_registry(cfg));
  srv.start();
  std::vector<int> pending;
  for (int i = 0; i < 3; ++i) pending.push_back(::socket(AF_INET, SOCK_STREAM, 0));
  int top = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
    top = std::max(top, std::stoi(e.path().filename().string()));
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(top + 1);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<int> fillers;  // every free descriptor below the limit
  for (int fd; (fd = ::dup(0)) >= 0;) fillers.push_back(fd);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(srv.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int fd : pending) CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  // The connections wait in the backlog; the server cannot accept them. It must not spin.
  const double cpu0 = cpu_seconds();
  std::this_thread::sleep_for(1s);
  const double cpu = cpu_seconds() - cpu0;
  for (int fd : fillers) ::close(fd);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  MESSAGE("CPU while out of descriptors: " << cpu << " s in 1 s");
  CHECK(cpu < 0.25);
  const std::string text = srv.metrics_text();
  CHECK(metric(text, "r1_accept_errors_total") >= 1);
  CHECK(metric(text, "r1_accept_errors_total") < 100);
  // With descriptors back, the waiting connections are served.
  const std::string body = score_body(1);
  for (int fd : pending) {
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const std::string req = post_head(body.size()) + body;
    REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
    char buf[16] = {};
    CHECK(::read(fd, buf, 12) == 12);
    CHECK(std::string(buf, 12) == "HTTP/1.1 200");
    ::close(fd);
  }
  srv.stop();
}

TEST_CASE("service: every program of the adversarial corpus scores what it must through POST /v1/score") {
  r1::test::HostCanaries host;
  const auto corpus = r1::test::attack_corpus(host.fill());
  REQUIRE(corpus.size() >= 70);
  auto cfg = base_config();
  cfg.service.max_body_kb = 4096;
  cfg.service.request_timeout_ms = 300000;
  cfg.rewards.deadline_ms = 10000;
  rewards::RewardEntry code;
  code.checker = "code";
  code.code.emplace();
  code.code->timeout_ms = 2000;
  cfg.rewards.checkers = {code};
  service::Server srv(cfg, test_registry(cfg));
  srv.start();
  boost::json::array samples;
  for (const auto& a : corpus) samples.push_back(service::sample_to_json(a.sample));
  auto opts = client_for(srv.port());
  opts.timeout_ms = 300000;
  service::RewardClient c(opts);
  auto t0 = Clock::now();
  auto [st, body] = c.request("POST", "/v1/score", boost::json::serialize(boost::json::object{{"samples", samples}}));
  REQUIRE_MESSAGE(st == 200, body.substr(0, 500));
  const auto results = boost::json::parse(body).as_object().at("results").as_array();
  REQUIRE(results.size() == corpus.size());
  int hostile = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    INFO(corpus[i].id << ": " << results[i].as_object().at("reason").as_string());
    CHECK(results[i].as_object().at("score").to_number<double>() == doctest::Approx(corpus[i].score));
    hostile += corpus[i].score < 1;
  }
  MESSAGE(corpus.size() << " samples (" << hostile << " hostile) in one request: "
                        << std::chrono::duration<double>(Clock::now() - t0).count() << " s");
  r1::test::require_no_processes_of(test_sandbox()->slot_uids());
  host.check_untouched();
  CHECK(c.healthy());
  srv.stop();
}
