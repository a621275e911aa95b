// The reward service: Beast sessions on an io_context, a bounded scoring queue with worker
// threads, Prometheus metrics, and graceful shutdown.
#include "rewards/service/service.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <malloc.h>

#include "common/config.hpp"
#include "common/error.hpp"
#include "rewards/service/handler.hpp"

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

}  // namespace

// ---- Server state -----------------------------------------------------------------------------

// The request bytes all connections hold at once (bodies being read, queued or scored), against
// max_buffered_mb; the gauge r1_buffered_request_bytes shows it. Once nothing is held after at
// least kTrimBytes were freed, malloc_trim hands the freed pages back to the OS.
class ByteBudget {
 public:
  static constexpr int64_t kTrimBytes = 16 << 20;
  ByteBudget(int64_t cap, std::atomic<int64_t>& used) : cap_(cap), used_(used) {}
  bool take(int64_t n) {
    int64_t cur = used_.load();
    do {
      if (cur + n > cap_) return false;
    } while (!used_.compare_exchange_weak(cur, cur + n));
    return true;
  }
  void give(int64_t n) {
    if (n == 0) return;
    const int64_t freed = freed_.fetch_add(n) + n;
    if (used_.fetch_sub(n) == n && freed >= kTrimBytes) {
      freed_ = 0;
      ::malloc_trim(0);
    }
  }

 private:
  const int64_t cap_;
  std::atomic<int64_t>& used_;
  std::atomic<int64_t> freed_{0};
};

class Session;

struct Server::Impl {
  ServiceConfig cfg;
  Handler handler;
  ByteBudget budget;
  net::io_context ioc;
  tcp::acceptor acceptor;
  net::steady_timer accept_timer;
  int accept_backoff_ms = 0;  // grows while accepts fail for want of descriptors
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
      : cfg(c),
        handler(c, std::move(reg), std::move(sb)),
        budget(c.service.max_buffered_mb << 20, handler.metrics().buffered_bytes),
        acceptor(ioc),
        accept_timer(ioc) {
    if (cfg.service.max_buffered_mb * 1024 < cfg.service.max_body_kb)
      throw ConfigError("service.max_buffered_mb (" + std::to_string(cfg.service.max_buffered_mb) +
                        " MiB) must hold at least one body of service.max_body_kb (" +
                        std::to_string(cfg.service.max_body_kb) + " KiB)");
    listen();
    workers = std::make_unique<Workers>(static_cast<int>(cfg.service.max_inflight),
                                        static_cast<size_t>(cfg.service.max_queue));
  }

  uint64_t body_limit() const { return static_cast<uint64_t>(cfg.service.max_body_kb) * 1024; }
  void listen();
  void accept();
  void accept_failed(const beast::error_code& ec);
  bool submit(ScoreJob job, std::function<void(Reply)> deliver);
  void begin_stop();
  void maybe_finish();
};

void Server::Impl::listen() {
  boost::system::error_code ec;
  auto addr = net::ip::make_address(cfg.service.host, ec);
  if (ec) throw ConfigError("service.host: '" + cfg.service.host + "' is not an IP address");
  tcp::endpoint ep(addr, static_cast<uint16_t>(cfg.service.port));
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) fail("reward service: cannot listen on {}:{}: {}", cfg.service.host, cfg.service.port, ec.message());
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `srv` outlives every session: it owns the io_context whose handlers hold the sessions.
  Session(tcp::socket s, Server::Impl* srv) : stream_(std::move(s)), srv_(srv), timer_(stream_.get_executor()) {}

  void start() {
    metrics().connections++;
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }
  ~Session() {
    srv_->budget.give(held_);
    metrics().connections--;
  }

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
  Metrics& metrics() { return srv_->handler.metrics(); }

  // The next request: its header first, so that its body is admitted against the byte budget
  // before it is read. read_timeout_ms bounds header and body together.
  void read() {
    if (srv_->stopping) return close();
    parser_.emplace();
    parser_->body_limit(srv_->body_limit());
    parser_->header_limit(kHeaderLimit);
    idle_ = true;
    stream_.expires_after(std::chrono::milliseconds(srv_->cfg.service.read_timeout_ms));
    http::async_read_header(stream_, buf_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    idle_ = false;
    t0_ = Clock::now();
    route_ = "other";
    if (read_failed(ec)) return;
    // A chunked body may grow to the body limit: that much is held for it.
    const uint64_t need = parser_->chunked() ? srv_->body_limit() : parser_->content_length().value_or(0);
    if (need > srv_->body_limit()) return send(too_large(), false);
    if (!srv_->budget.take(static_cast<int64_t>(need))) {
      metrics().over_budget++;
      return send(json_error(503, "overloaded: the request bodies held now would pass max_buffered_mb"), false);
    }
    held_ = static_cast<int64_t>(need);
    http::async_read(stream_, buf_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  // Closes the connection or answers the error when a read failed; false when it did not.
  bool read_failed(const beast::error_code& ec) {
    if (!ec) return false;
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset || ec == net::error::eof) {
      close();
    } else if (ec == http::error::body_limit) {
      send(too_large(), false);
    } else if (ec == http::error::header_limit) {
      send(json_error(431, "headers too large"), false);
    } else {
      send(json_error(400, "bad HTTP request: " + ec.message()), false);
    }
    return true;
  }

  Reply too_large() const {
    return json_error(413, "request body over " + std::to_string(srv_->cfg.service.max_body_kb) + " KiB");
  }

  void on_read(beast::error_code ec) {
    if (read_failed(ec)) return;
    req_ = parser_->release();
    keep_alive_ = req_.keep_alive();
    responded_ = false;
    srv_->busy_requests++;
    busy_ = true;
    route_ = route_name(route_of(req_.target()));
    std::variant<Reply, ScoreJob> routed;
    try {
      routed = srv_->handler.route(req_.method(), req_.target(), req_.body(), srv_->stopping);
    } catch (const std::exception& e) {
      routed = json_error(500, std::string("internal error: ") + e.what());
    }
    if (auto* r = std::get_if<Reply>(&routed)) return deliver(std::move(*r));
    auto to_me = [self = shared_from_this()](Reply rep) {
      net::post(self->stream_.get_executor(),
                [self, rep = std::move(rep)]() mutable { self->deliver(std::move(rep)); });
    };
    if (!srv_->submit(std::move(std::get<ScoreJob>(routed)), std::move(to_me))) {
      metrics().rejected++;
      return deliver(json_error(503, "overloaded: every scoring slot is busy and the queue is full"));
    }
    // The scoring result arrives through deliver(); past the deadline a 504 goes out first.
    timer_.expires_after(std::chrono::milliseconds(srv_->cfg.service.request_timeout_ms));
    timer_.async_wait([self = shared_from_this()](beast::error_code tec) {
      if (tec || self->responded_) return;
      self->metrics().deadline_exceeded++;
      self->deliver(json_error(
          504, "request deadline of " + std::to_string(self->srv_->cfg.service.request_timeout_ms) + " ms exceeded"));
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
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(r.status), 11);
    res->set(http::field::server, "r1-reward-service");
    res->set(http::field::content_type, r.content_type);
    if (r.status == 503) res->set(http::field::retry_after, "1");
    res->keep_alive(keep_alive && !srv_->stopping);
    res->body() = std::move(r.body);
    res->prepare_payload();
    double secs = std::chrono::duration<double>(Clock::now() - t0_).count();
    metrics().request(route_, r.status, secs);
    stream_.expires_after(std::chrono::milliseconds(srv_->cfg.service.read_timeout_ms));
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
      self->finish_request();
      if (ec || !res->keep_alive()) return self->close();
      self->read();
    });
  }

  // The request is answered: its body and buffers are freed and its bytes go back to the budget.
  void finish_request() {
    req_ = {};
    parser_.reset();
    if (buf_.size() == 0 && buf_.capacity() > (64 << 10)) buf_.shrink_to_fit();
    srv_->budget.give(held_);
    held_ = 0;
    if (busy_) {
      busy_ = false;
      srv_->busy_requests--;
      srv_->maybe_finish();
    }
  }

  void close() {
    finish_request();
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
  int64_t held_ = 0;  // bytes of the byte budget this request holds
  bool keep_alive_ = true, idle_ = true, busy_ = false, responded_ = true;
  Clock::time_point t0_ = Clock::now();
  std::string route_ = "other";
};

void Server::Impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [self = this](beast::error_code ec, tcp::socket s) {
    if (self->stopping) return;
    if (ec) return self->accept_failed(ec);
    self->accept_backoff_ms = 0;
    s.set_option(tcp::no_delay(true), ec);
    auto sess = std::make_shared<Session>(std::move(s), self);
    {
      std::lock_guard lk(self->sessions_m);
      for (auto it = self->sessions.begin(); it != self->sessions.end();)
        it = it->expired() ? self->sessions.erase(it) : std::next(it);
      self->sessions.insert(sess);
    }
    sess->start();
    self->accept();
  });
}

// Out of descriptors or buffers, the pending connection stays in the backlog and the next accept
// fails at once: wait (5 ms, doubling to 1 s) instead of spinning. Other errors skip a connection.
void Server::Impl::accept_failed(const beast::error_code& ec) {
  handler.metrics().accept_errors++;
  const bool out_of_resources = ec == net::error::no_descriptors || ec == net::error::no_buffer_space ||
                                ec == net::error::no_memory || ec == boost::system::errc::too_many_files_open_in_system;
  if (!out_of_resources) return accept();
  accept_backoff_ms = std::clamp(accept_backoff_ms * 2, 5, 1000);
  accept_timer.expires_after(std::chrono::milliseconds(accept_backoff_ms));
  accept_timer.async_wait([self = this](beast::error_code tec) {
    if (!tec && !self->stopping) self->accept();
  });
}

bool Server::Impl::submit(ScoreJob job, std::function<void(Reply)> deliver) {
  auto deadline = Clock::now() + std::chrono::milliseconds(cfg.service.request_timeout_ms);
  auto& m = handler.metrics();
  m.queued++;
  auto shared_job = std::make_shared<ScoreJob>(std::move(job));
  // Workers are joined in stop(), before the Impl goes away.
  bool ok = workers->try_submit([self = this, shared_job, deliver = std::move(deliver), deadline] {
    self->handler.metrics().queued--;
    if (Clock::now() >= deadline) return;  // the session has answered 504 already
    deliver(self->handler.score(*shared_job));
  });
  if (!ok) m.queued--;
  return ok;
}

void Server::Impl::begin_stop() {
  if (stopping.exchange(true)) return;
  net::post(ioc, [self = this] {
    boost::system::error_code ec;
    self->acceptor.close(ec);
    self->accept_timer.cancel();
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

std::string Server::metrics_text() const { return impl_->handler.metrics_text(); }

}  // namespace r1::service
