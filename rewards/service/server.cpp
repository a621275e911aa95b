// The reward service: Beast sessions on an io_context, a bounded scoring queue with worker
// threads, Prometheus metrics, and graceful shutdown.
#include "rewards/service/service.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "common/config.hpp"
#include "common/error.hpp"
#include "rewards/sandbox/code_checker.hpp"
#include "rewards/scorer.hpp"

namespace r1::service {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

ServiceConfig load_service_config(const std::filesystem::path& file, const std::vector<std::string>& overrides) {
  toml::table t = file.empty() ? toml::table{} : cfg::parse_file(file);
  for (const auto& o : overrides) cfg::apply_override(t, o);
  ServiceConfig c;
  cfg::Errors errs;
  cfg::read_section(t, "service", c.service, errs);
  cfg::read_section(t, "sandbox", c.sandbox, errs);
  cfg::read_section(t, "rewards", c.rewards, errs);  // the default composition and declared plugins/commands
  errs.throw_if_any();
  return c;
}

namespace {

// ---- Metrics ------------------------------------------------------------------------------------

constexpr double kBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
constexpr size_t kNumBuckets = sizeof kBuckets / sizeof kBuckets[0];

struct Metrics {
  mutable std::mutex m;
  std::map<std::pair<std::string, int>, uint64_t> requests;        // (route, status)
  std::map<std::pair<std::string, std::string>, uint64_t> checks;  // (checker part, status)
  uint64_t bucket[kNumBuckets + 1] = {};
  double latency_sum = 0;
  uint64_t latency_count = 0, samples = 0;
  std::atomic<int64_t> inflight{0}, queued{0}, connections{0};
  std::atomic<uint64_t> rejected{0}, deadline_exceeded{0};

  void request(const std::string& route, int status, double secs) {
    std::lock_guard lk(m);
    requests[{route, status}]++;
    size_t b = 0;
    while (b < kNumBuckets && secs > kBuckets[b]) ++b;
    bucket[b]++;
    latency_sum += secs;
    latency_count++;
  }
  void scored(const std::vector<rewards::Scored>& out) {
    std::lock_guard lk(m);
    samples += out.size();
    for (const auto& s : out)
      for (const auto& p : s.parts) checks[{p.name, rewards::status_name(p.result.status)}]++;
  }
};

std::string escape_label(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

// ---- The scoring engine: the configured composition and one scorer per checker kind ------------

class Engine {
 public:
  Engine(const rewards::RewardsConfig& cfg, rewards::Registry reg) : cfg_(cfg), reg_(std::move(reg)) {
    if (!cfg_.checkers.empty()) composed_ = std::make_unique<rewards::Scorer>(cfg_, reg_);
  }
  bool has_composition() const { return composed_ != nullptr; }
  bool has(const std::string& kind) const { return reg_.has(kind); }
  std::vector<std::string> kinds() const { return reg_.kinds(); }

  std::vector<rewards::Scored> score(const std::vector<rewards::Sample>& samples, const std::string& kind) {
    return scorer_for(kind).score(samples);
  }

 private:
  rewards::Scorer& scorer_for(const std::string& kind) {
    if (kind.empty()) return *composed_;
    std::lock_guard lk(m_);
    auto& s = by_kind_[kind];
    if (!s) {
      rewards::RewardsConfig one = cfg_;
      rewards::RewardEntry e;
      e.checker = kind;
      one.checkers = {e};
      s = std::make_unique<rewards::Scorer>(one, reg_);
    }
    return *s;
  }

  rewards::RewardsConfig cfg_;
  rewards::Registry reg_;
  std::unique_ptr<rewards::Scorer> composed_;
  std::mutex m_;
  std::map<std::string, std::unique_ptr<rewards::Scorer>> by_kind_;
};

// ---- Bounded worker pool ------------------------------------------------------------------------

class Workers {
 public:
  Workers(int n, size_t queue_cap) : cap_(queue_cap) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~Workers() {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  // False when every worker is busy and the queue is full.
  bool try_submit(std::function<void()> f) {
    {
      std::lock_guard lk(m_);
      if (q_.size() >= cap_ + idle_) return false;
      q_.push_back(std::move(f));
    }
    cv_.notify_one();
    return true;
  }

 private:
  void loop() {
    std::unique_lock lk(m_);
    while (true) {
      ++idle_;
      cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
      --idle_;
      if (q_.empty()) return;  // stopping and drained
      auto f = std::move(q_.front());
      q_.pop_front();
      lk.unlock();
      try {
        f();
      } catch (...) {
        // Jobs report their own errors; nothing may kill a worker.
      }
      lk.lock();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  size_t cap_, idle_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

struct Reply {
  http::status status = http::status::ok;
  std::string body;
  std::string content_type = "application/json";
};

Reply json_error(http::status st, const std::string& msg, boost::json::object extra = {}) {
  extra["error"] = msg;
  return {st, boost::json::serialize(extra) + "\n"};
}

}  // namespace

// ---- Server state -----------------------------------------------------------------------------

class Session;

struct Server::Impl {
  ServiceConfig cfg;
  std::shared_ptr<sandbox::Sandbox> sandbox;
  Engine engine;
  Metrics metrics;
  net::io_context ioc;
  tcp::acceptor acceptor;
  std::unique_ptr<Workers> workers;
  std::vector<std::thread> io_threads;
  std::atomic<bool> stopping{false}, started{false};
  std::mutex sessions_m;
  std::set<std::weak_ptr<Session>, std::owner_less<std::weak_ptr<Session>>> sessions;
  std::atomic<int64_t> busy_requests{0};  // read complete, response not yet written
  std::mutex stop_m;
  std::condition_variable stop_cv;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> guard;
  std::optional<net::signal_set> signals;
  bool stopped = false;

  Impl(const ServiceConfig& c, std::shared_ptr<sandbox::Sandbox> sb, rewards::Registry reg)
      : cfg(c), sandbox(std::move(sb)), engine(c.rewards, std::move(reg)), acceptor(ioc) {
    boost::system::error_code ec;
    auto addr = net::ip::make_address(cfg.service.host, ec);
    if (ec) throw ConfigError("service.host: '" + cfg.service.host + "' is not an IP address");
    tcp::endpoint ep(addr, static_cast<uint16_t>(cfg.service.port));
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) fail("reward service: cannot listen on {}:{}: {}", cfg.service.host, cfg.service.port, ec.message());
    workers = std::make_unique<Workers>(static_cast<int>(cfg.service.max_inflight),
                                        static_cast<size_t>(cfg.service.max_queue));
  }

  void accept();
  void begin_stop();
  void maybe_finish();
  Reply handle(const http::request<http::string_body>& req, std::function<void(Reply)> deliver, bool& async);
  std::string metrics_text() const;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `srv` outlives every session: it owns the io_context whose handlers hold the sessions.
  Session(tcp::socket s, Server::Impl* srv) : stream_(std::move(s)), srv_(srv), timer_(stream_.get_executor()) {}

  void start() {
    srv_->metrics.connections++;
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }
  ~Session() { srv_->metrics.connections--; }

  // Called on shutdown: a connection waiting for its next request is closed now.
  void close_if_idle() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->idle_) {
        boost::system::error_code ec;
        self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        self->stream_.close();
      }
    });
  }

 private:
  void read() {
    if (srv_->stopping) return close();
    parser_.emplace();
    parser_->body_limit(static_cast<uint64_t>(srv_->cfg.service.max_body_kb) * 1024);
    parser_->header_limit(64 * 1024);
    idle_ = true;
    stream_.expires_after(std::chrono::milliseconds(srv_->cfg.service.read_timeout_ms));
    http::async_read(stream_, buf_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    idle_ = false;
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset || ec == net::error::eof) {
      return close();
    }
    t0_ = Clock::now();
    route_ = "other";
    if (ec == http::error::body_limit) {
      return send(json_error(http::status::payload_too_large,
                             "request body over " + std::to_string(srv_->cfg.service.max_body_kb) + " KiB"),
                  false);
    }
    if (ec == http::error::header_limit)
      return send(json_error(http::status::request_header_fields_too_large, "headers too large"), false);
    if (ec) return send(json_error(http::status::bad_request, "bad HTTP request: " + ec.message()), false);

    req_ = parser_->release();
    keep_alive_ = req_.keep_alive();
    responded_ = false;
    srv_->busy_requests++;
    busy_ = true;
    bool async = false;
    Reply r;
    try {
      r = srv_->handle(
          req_,
          [self = shared_from_this()](Reply rep) {
            net::post(self->stream_.get_executor(),
                      [self, rep = std::move(rep)]() mutable { self->deliver(std::move(rep)); });
          },
          async);
    } catch (const std::exception& e) {
      r = json_error(http::status::internal_server_error, std::string("internal error: ") + e.what());
      async = false;
    }
    std::string target(req_.target());
    route_ = target == "/v1/score"  ? "/v1/score"
             : target == "/healthz" ? "/healthz"
             : target == "/metrics" ? "/metrics"
                                    : "other";
    if (!async) return deliver(std::move(r));
    // The scoring result arrives through deliver(); past the deadline a 504 goes out first.
    timer_.expires_after(std::chrono::milliseconds(srv_->cfg.service.request_timeout_ms));
    timer_.async_wait([self = shared_from_this()](beast::error_code tec) {
      if (tec || self->responded_) return;
      self->srv_->metrics.deadline_exceeded++;
      self->deliver(json_error(
          http::status::gateway_timeout,
          "request deadline of " + std::to_string(self->srv_->cfg.service.request_timeout_ms) + " ms exceeded"));
    });
    stream_.expires_never();  // the client is waiting, not sending
  }

  void deliver(Reply r) {
    if (responded_) return;  // the deadline reply already went out
    responded_ = true;
    timer_.cancel();
    send(std::move(r), keep_alive_);
  }

  void send(Reply r, bool keep_alive) {
    responded_ = true;
    auto res = std::make_shared<http::response<http::string_body>>(r.status, 11);
    res->set(http::field::server, "r1-reward-service");
    res->set(http::field::content_type, r.content_type);
    if (r.status == http::status::service_unavailable) res->set(http::field::retry_after, "1");
    res->keep_alive(keep_alive && !srv_->stopping);
    res->body() = std::move(r.body);
    res->prepare_payload();
    double secs = std::chrono::duration<double>(Clock::now() - t0_).count();
    srv_->metrics.request(route_, static_cast<int>(r.status), secs);
    stream_.expires_after(std::chrono::milliseconds(srv_->cfg.service.read_timeout_ms));
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
      self->done_busy();
      if (ec || !res->keep_alive()) return self->close();
      self->read();
    });
  }

  void done_busy() {
    if (busy_) {
      busy_ = false;
      srv_->busy_requests--;
      srv_->maybe_finish();
    }
  }

  void close() {
    done_busy();
    boost::system::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
    timer_.cancel();
  }

  beast::tcp_stream stream_;
  Server::Impl* srv_;
  net::steady_timer timer_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> req_;
  bool keep_alive_ = true, idle_ = true, busy_ = false, responded_ = true;
  Clock::time_point t0_ = Clock::now();
  std::string route_ = "other";
};

void Server::Impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [self = this](beast::error_code ec, tcp::socket s) {
    if (self->stopping) return;
    if (!ec) {
      s.set_option(tcp::no_delay(true), ec);
      auto sess = std::make_shared<Session>(std::move(s), self);
      {
        std::lock_guard lk(self->sessions_m);
        for (auto it = self->sessions.begin(); it != self->sessions.end();)
          it = it->expired() ? self->sessions.erase(it) : std::next(it);
        self->sessions.insert(sess);
      }
      sess->start();
    }
    self->accept();  // errors (e.g. too many open files) only skip this connection
  });
}

Reply Server::Impl::handle(const http::request<http::string_body>& req, std::function<void(Reply)> deliver,
                           bool& async) {
  async = false;
  std::string target(req.target());
  if (target == "/healthz") {
    if (req.method() != http::verb::get && req.method() != http::verb::head)
      return json_error(http::status::method_not_allowed, "use GET /healthz");
    if (stopping) return json_error(http::status::service_unavailable, "shutting down");
    boost::json::object o{{"status", "ok"}, {"inflight", metrics.inflight.load()}, {"queued", metrics.queued.load()}};
    return {http::status::ok, boost::json::serialize(o) + "\n"};
  }
  if (target == "/metrics") {
    if (req.method() != http::verb::get) return json_error(http::status::method_not_allowed, "use GET /metrics");
    return {http::status::ok, metrics_text(), "text/plain; version=0.0.4"};
  }
  if (target != "/v1/score")
    return json_error(http::status::not_found,
                      "no such endpoint: " + target + " (POST /v1/score, GET /healthz, GET /metrics)");
  if (req.method() != http::verb::post) return json_error(http::status::method_not_allowed, "use POST /v1/score");
  if (stopping) return json_error(http::status::service_unavailable, "shutting down");

  // ---- Validate everything before queueing. ----
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(req.body(), ec);
  if (ec) return json_error(http::status::bad_request, "malformed JSON: " + ec.message());
  if (!v.is_object())
    return json_error(http::status::bad_request, "the body must be a JSON object {\"samples\": [...]}");
  const auto& o = v.as_object();
  std::string kind;
  if (auto* c = o.if_contains("checker"); c && !c->is_null()) {
    if (!c->is_string()) return json_error(http::status::bad_request, "\"checker\" must be a string");
    kind = std::string(c->as_string());
    if (!engine.has(kind)) {
      boost::json::array known;
      for (const auto& k : engine.kinds()) known.push_back(boost::json::string(k));
      return json_error(http::status::bad_request, "unknown checker '" + kind + "'", {{"known", known}});
    }
  } else if (!engine.has_composition()) {
    return json_error(http::status::bad_request,
                      "no \"checker\" given and the service has no [[rewards.checkers]] composition");
  }
  auto* sv = o.if_contains("samples");
  if (!sv) return json_error(http::status::bad_request, "missing \"samples\" (an array of sample objects)");
  if (!sv->is_array()) return json_error(http::status::bad_request, "\"samples\" must be an array");
  const auto& arr = sv->as_array();
  if (arr.empty()) return json_error(http::status::bad_request, "\"samples\" is empty");
  if (static_cast<int64_t>(arr.size()) > cfg.service.max_batch)
    return json_error(http::status::payload_too_large,
                      "more than " + std::to_string(cfg.service.max_batch) + " samples in one request");
  auto samples = std::make_shared<std::vector<rewards::Sample>>();
  samples->reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    try {
      samples->push_back(rewards::sample_from_json(arr[i], "samples[" + std::to_string(i) + "]"));
    } catch (const std::exception& e) {
      return json_error(http::status::bad_request, e.what());
    }
  }

  // ---- Queue the scoring. ----
  auto deadline = Clock::now() + std::chrono::milliseconds(cfg.service.request_timeout_ms);
  metrics.queued++;
  auto* self = this;  // workers are joined in stop(), before the Impl goes away
  bool ok = workers->try_submit([self, samples, kind, deliver, deadline] {
    self->metrics.queued--;
    if (Clock::now() >= deadline) return;  // the session has answered 504 already
    self->metrics.inflight++;
    Reply r;
    try {
      auto out = self->engine.score(*samples, kind);
      self->metrics.scored(out);
      boost::json::array results;
      results.reserve(out.size());
      for (const auto& s : out) results.push_back(rewards::to_json(s));
      r = {http::status::ok, boost::json::serialize(boost::json::object{{"results", std::move(results)}}) + "\n"};
    } catch (const std::exception& e) {
      r = json_error(http::status::internal_server_error, std::string("scoring failed: ") + e.what());
    }
    self->metrics.inflight--;
    deliver(std::move(r));
  });
  if (!ok) {
    metrics.queued--;
    metrics.rejected++;
    return json_error(http::status::service_unavailable,
                      "overloaded: every scoring slot is busy and the queue is full");
  }
  async = true;
  return {};
}

std::string Server::Impl::metrics_text() const {
  std::ostringstream os;
  std::lock_guard lk(metrics.m);
  os << "# HELP r1_requests_total HTTP requests by route and status.\n# TYPE r1_requests_total counter\n";
  for (const auto& [k, n] : metrics.requests)
    os << "r1_requests_total{route=\"" << k.first << "\",code=\"" << k.second << "\"} " << n << "\n";
  os << "# HELP r1_request_duration_seconds Request latency, read to response.\n# TYPE r1_request_duration_seconds "
        "histogram\n";
  uint64_t cum = 0;
  for (size_t b = 0; b < kNumBuckets; ++b) {
    cum += metrics.bucket[b];
    os << "r1_request_duration_seconds_bucket{le=\"" << kBuckets[b] << "\"} " << cum << "\n";
  }
  cum += metrics.bucket[kNumBuckets];
  os << "r1_request_duration_seconds_bucket{le=\"+Inf\"} " << cum << "\n";
  os << "r1_request_duration_seconds_sum " << metrics.latency_sum << "\nr1_request_duration_seconds_count "
     << metrics.latency_count << "\n";
  os << "# HELP r1_samples_total Samples scored.\n# TYPE r1_samples_total counter\nr1_samples_total " << metrics.samples
     << "\n";
  os << "# HELP r1_checks_total Checks by checker (part name) and status (ok, timeout, error).\n# TYPE r1_checks_total "
        "counter\n";
  uint64_t timeouts = 0;
  for (const auto& [k, n] : metrics.checks) {
    os << "r1_checks_total{checker=\"" << escape_label(k.first) << "\",status=\"" << k.second << "\"} " << n << "\n";
    if (k.second == "timeout") timeouts += n;
  }
  os << "# HELP r1_check_timeouts_total Checks that hit their deadline.\n# TYPE r1_check_timeouts_total "
        "counter\nr1_check_timeouts_total "
     << timeouts << "\n";
  os << "# HELP r1_request_deadline_exceeded_total Requests answered 504.\n# TYPE r1_request_deadline_exceeded_total "
        "counter\n"
     << "r1_request_deadline_exceeded_total " << metrics.deadline_exceeded.load() << "\n";
  os << "# HELP r1_requests_rejected_total Requests answered 503 because the queue was full.\n# TYPE "
        "r1_requests_rejected_total counter\n"
     << "r1_requests_rejected_total " << metrics.rejected.load() << "\n";
  os << "# TYPE r1_inflight_requests gauge\nr1_inflight_requests " << metrics.inflight.load() << "\n";
  os << "# TYPE r1_queued_requests gauge\nr1_queued_requests " << metrics.queued.load() << "\n";
  os << "# TYPE r1_open_connections gauge\nr1_open_connections " << metrics.connections.load() << "\n";
  auto vc = sandbox::verdict_counts();
  os << "# HELP r1_sandbox_verdicts_total Code checker verdicts.\n# TYPE r1_sandbox_verdicts_total counter\n";
  for (int i = 0; i < sandbox::kVerdictCount; ++i)
    os << "r1_sandbox_verdicts_total{verdict=\"" << sandbox::verdict_name(static_cast<sandbox::Verdict>(i)) << "\"} "
       << vc.n[i] << "\n";
  if (sandbox) {
    auto st = sandbox->stats();
    os << "# HELP r1_sandbox_runs_total Sandbox runs and how they ended.\n# TYPE r1_sandbox_runs_total counter\n";
    os << "r1_sandbox_runs_total " << st.runs << "\n";
    os << "r1_sandbox_timeouts_total " << st.timeouts << "\nr1_sandbox_output_limits_total " << st.output_limits
       << "\nr1_sandbox_cpu_limits_total " << st.cpu_limits << "\nr1_sandbox_spawn_failures_total " << st.spawn_failures
       << "\n";
  }
  return os.str();
}

void Server::Impl::begin_stop() {
  if (stopping.exchange(true)) return;
  net::post(ioc, [self = this] {
    boost::system::error_code ec;
    self->acceptor.close(ec);
    if (self->signals) self->signals->cancel(ec);
    std::vector<std::shared_ptr<Session>> live;
    {
      std::lock_guard lk(self->sessions_m);
      for (auto& w : self->sessions)
        if (auto s = w.lock()) live.push_back(s);
    }
    for (auto& s : live) s->close_if_idle();
    self->maybe_finish();
  });
}

void Server::Impl::maybe_finish() {
  if (!stopping || busy_requests.load() > 0) return;
  std::lock_guard lk(stop_m);
  if (guard) guard->reset();
  stop_cv.notify_all();
}

// ---- Server ---------------------------------------------------------------------------------------

Server::Server(const ServiceConfig& cfg, rewards::Registry registry, std::shared_ptr<sandbox::Sandbox> sandbox)
    : impl_(std::make_shared<Impl>(cfg, std::move(sandbox), std::move(registry))) {}

Server::~Server() { stop(); }

uint16_t Server::port() const { return impl_->acceptor.local_endpoint().port(); }

void Server::start() {
  if (impl_->started.exchange(true)) return;
  impl_->guard.emplace(net::make_work_guard(impl_->ioc));
  impl_->accept();
  for (int64_t i = 0; i < impl_->cfg.service.io_threads; ++i)
    impl_->io_threads.emplace_back([impl = impl_] {
      while (true) {
        try {
          impl->ioc.run();
          return;
        } catch (const std::exception&) {
          // A handler threw: keep serving.
        }
      }
    });
}

void Server::run() {
  ::signal(SIGPIPE, SIG_IGN);  // a peer hanging up is an error code, never a signal
  impl_->signals.emplace(impl_->ioc, SIGTERM, SIGINT);
  impl_->signals->async_wait([impl = impl_.get()](beast::error_code ec, int) {
    if (!ec) impl->begin_stop();
  });
  start();
  std::unique_lock lk(impl_->stop_m);
  impl_->stop_cv.wait(lk, [&] { return impl_->stopping.load() && impl_->busy_requests.load() == 0; });
  lk.unlock();
  stop();
}

void Server::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->begin_stop();
  {
    std::unique_lock lk(impl_->stop_m);
    impl_->stop_cv.wait_for(lk, std::chrono::milliseconds(impl_->cfg.service.drain_timeout_ms),
                            [&] { return impl_->busy_requests.load() == 0; });
  }
  // Connections still open (mid-request, or past the drain timeout) are cut.
  impl_->ioc.stop();
  for (auto& t : impl_->io_threads)
    if (t.joinable()) t.join();
  impl_->io_threads.clear();
  impl_->workers.reset();  // finishes queued jobs (their replies go nowhere)
  impl_->stopped = true;
}

std::string Server::metrics_text() const { return impl_->metrics_text(); }

}  // namespace r1::service
