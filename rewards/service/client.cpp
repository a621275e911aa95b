// The reward service client: keep-alive connections, timeouts, retries with backoff.
#include "rewards/service/client.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <random>
#include <thread>

#include "common/config.hpp"
#include "common/error.hpp"

namespace r1::service {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// ---- JSON ----------------------------------------------------------------------------------------

boost::json::object sample_to_json(const rewards::Sample& s) {
  boost::json::object o;
  o["prompt"] = s.prompt;
  o["completion"] = s.completion;
  o["reference"] = s.reference;
  if (!s.metadata.empty()) o["metadata"] = s.metadata;
  if (s.completion_tokens) o["completion_tokens"] = *s.completion_tokens;
  return o;
}

rewards::Scored scored_from_json(const boost::json::value& v) {
  if (!v.is_object()) fail("reward service: a result is not a JSON object");
  const auto& o = v.as_object();
  rewards::Scored s;
  auto num = [](const boost::json::value* x) { return x && x->is_number() ? x->to_number<double>() : 0.0; };
  auto status = [](const boost::json::value* x) {
    std::string t = x && x->is_string() ? std::string(x->as_string()) : "error";
    return t == "ok" ? rewards::Status::ok : t == "timeout" ? rewards::Status::timeout : rewards::Status::error;
  };
  s.score = num(o.if_contains("score"));
  s.status = status(o.if_contains("status"));
  const auto* parts = o.if_contains("parts");
  const auto* reasons = o.if_contains("reasons");
  const auto* details = o.if_contains("details");
  if (details && details->is_object()) {
    for (const auto& [name, d] : details->as_object()) {
      rewards::PartResult p;
      p.name = std::string(name);
      if (d.is_object()) {
        p.weight = d.as_object().if_contains("weight") ? num(d.as_object().if_contains("weight")) : 1.0;
        p.result.status = status(d.as_object().if_contains("status"));
        if (auto* a = d.as_object().if_contains("answer"); a && a->is_string())
          p.result.answer = std::string(a->as_string());
        if (auto* sub = d.as_object().if_contains("parts"); sub && sub->is_object())
          for (const auto& [k, x] : sub->as_object()) p.result.parts.emplace_back(std::string(k), num(&x));
      }
      if (parts && parts->is_object()) p.result.score = num(parts->as_object().if_contains(name));
      if (reasons && reasons->is_object())
        if (auto* r = reasons->as_object().if_contains(name); r && r->is_string())
          p.result.reason = std::string(r->as_string());
      s.parts.push_back(std::move(p));
    }
  }
  return s;
}

// ---- Client --------------------------------------------------------------------------------------

namespace {

struct Conn {
  net::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buf;
  bool connected = false;
};

struct Url {
  std::string host, port, prefix;
};

Url parse_url(const std::string& u) {
  if (u.rfind("http://", 0) != 0) throw ConfigError("rewards.endpoint: '" + u + "' must start with http://");
  std::string rest = u.substr(7);
  Url r;
  auto slash = rest.find('/');
  if (slash != std::string::npos) {
    r.prefix = rest.substr(slash);
    rest = rest.substr(0, slash);
  }
  while (!r.prefix.empty() && r.prefix.back() == '/') r.prefix.pop_back();
  auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']') == std::string::npos) {
    r.host = rest.substr(0, colon);
    r.port = rest.substr(colon + 1);
  } else {
    r.host = rest;
    r.port = "80";
  }
  if (r.host.empty()) throw ConfigError("rewards.endpoint: '" + u + "' has no host");
  return r;
}

// Runs the io_context until the pending operation completes; a timeout surfaces as its error.
void run_op(Conn& c) {
  c.ioc.restart();
  c.ioc.run();
}

}  // namespace

struct RewardClient::Impl {
  ClientOptions o;
  Url url;
  std::mutex m;
  std::vector<std::unique_ptr<Conn>> idle;
  std::atomic<uint64_t> requests{0}, retries{0}, reconnects{0};
  std::mutex rng_m;
  std::mt19937_64 rng{std::random_device{}()};

  std::unique_ptr<Conn> acquire() {
    std::lock_guard lk(m);
    if (idle.empty()) return std::make_unique<Conn>();
    auto c = std::move(idle.back());
    idle.pop_back();
    return c;
  }
  void release(std::unique_ptr<Conn> c) {
    std::lock_guard lk(m);
    if (c->connected && static_cast<int64_t>(idle.size()) < o.connections) idle.push_back(std::move(c));
  }

  // One HTTP exchange on `c`; throws boost::system::system_error on connection problems.
  std::pair<int, std::string> exchange(Conn& c, const std::string& method, const std::string& target,
                                       const std::string& body) {
    beast::error_code ec;
    if (!c.connected) {
      tcp::resolver res(c.ioc);
      auto eps = res.resolve(url.host, url.port, ec);
      if (ec) throw boost::system::system_error(ec, "resolve " + url.host);
      c.stream.expires_after(std::chrono::milliseconds(o.connect_timeout_ms));
      c.stream.async_connect(eps, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
      run_op(c);
      if (ec) throw boost::system::system_error(ec, "connect to " + url.host + ":" + url.port);
      c.stream.socket().set_option(tcp::no_delay(true));
      c.connected = true;
      reconnects++;
    }
    http::request<http::string_body> req{http::string_to_verb(method), url.prefix + target, 11};
    req.set(http::field::host, url.host);
    req.set(http::field::user_agent, "r1-reward-client");
    req.keep_alive(true);
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    c.stream.expires_after(std::chrono::milliseconds(o.timeout_ms));
    http::async_write(c.stream, req, [&](beast::error_code e, size_t) { ec = e; });
    run_op(c);
    if (ec) throw boost::system::system_error(ec, "send");
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<uint64_t>::max());
    http::async_read(c.stream, c.buf, parser, [&](beast::error_code e, size_t) { ec = e; });
    run_op(c);
    if (ec) throw boost::system::system_error(ec, "receive");
    auto res = parser.release();
    if (!res.keep_alive()) close(c);
    return {static_cast<int>(res.result_int()), std::move(res.body())};
  }

  static void close(Conn& c) {
    beast::error_code ec;
    c.stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    c.stream.close();
    c.buf.clear();
    c.connected = false;
  }

  std::pair<int, std::string> once(const std::string& method, const std::string& target, const std::string& body) {
    auto c = acquire();
    bool reused = c->connected;
    requests++;
    try {
      auto r = exchange(*c, method, target, body);
      release(std::move(c));
      return r;
    } catch (const boost::system::system_error&) {
      close(*c);
      if (!reused) throw;
    }
    // A kept-alive connection the server had closed: one immediate retry on a fresh one.
    auto r = exchange(*c, method, target, body);
    release(std::move(c));
    return r;
  }

  std::chrono::milliseconds backoff(int attempt) {
    double base = static_cast<double>(o.backoff_ms) * std::pow(2.0, attempt);
    base = std::min(base, static_cast<double>(o.max_backoff_ms));
    std::lock_guard lk(rng_m);
    return std::chrono::milliseconds(
        static_cast<int64_t>(base * std::uniform_real_distribution<double>(0.5, 1.0)(rng)));
  }
};

RewardClient::RewardClient(ClientOptions o) : impl_(std::make_unique<Impl>()) {
  impl_->url = parse_url(o.endpoint);
  impl_->o = std::move(o);
}
RewardClient::~RewardClient() = default;

std::pair<int, std::string> RewardClient::request(const std::string& method, const std::string& target,
                                                  const std::string& body) {
  return impl_->once(method, target, body);
}

bool RewardClient::healthy() {
  try {
    return request("GET", "/healthz").first == 200;
  } catch (const std::exception&) {
    return false;
  }
}

RewardClient::Stats RewardClient::stats() const {
  return {impl_->requests.load(), impl_->retries.load(), impl_->reconnects.load()};
}

std::vector<rewards::Scored> RewardClient::score(const std::vector<rewards::Sample>& samples,
                                                 const std::string& checker) {
  std::vector<rewards::Scored> out;
  out.reserve(samples.size());
  const size_t step = static_cast<size_t>(impl_->o.max_batch);
  for (size_t b = 0; b < samples.size(); b += step) {
    boost::json::array arr;
    size_t e = std::min(samples.size(), b + step);
    for (size_t i = b; i < e; ++i) arr.push_back(sample_to_json(samples[i]));
    boost::json::object req{{"samples", std::move(arr)}};
    if (!checker.empty()) req["checker"] = checker;
    const std::string body = boost::json::serialize(req);
    std::string last;
    bool done = false;
    for (int attempt = 0; attempt <= impl_->o.retries && !done; ++attempt) {
      if (attempt > 0) {
        impl_->retries++;
        std::this_thread::sleep_for(impl_->backoff(attempt - 1));
      }
      std::pair<int, std::string> r;
      try {
        r = impl_->once("POST", "/v1/score", body);
      } catch (const boost::system::system_error& ex) {
        last = ex.what();
        continue;
      }
      auto [st, text] = r;
      if (st >= 500 || st == 429) {
        last = "HTTP " + std::to_string(st) + ": " + text.substr(0, 300);
        continue;
      }
      boost::system::error_code ec;
      auto v = boost::json::parse(text, ec);
      if (st >= 400) {
        std::string msg = text.substr(0, 500);
        if (!ec && v.is_object() && v.as_object().if_contains("error") && v.as_object().at("error").is_string())
          msg = std::string(v.as_object().at("error").as_string());
        throw RequestError(st, "reward service at " + impl_->o.endpoint + " refused the request (HTTP " +
                                   std::to_string(st) + "): " + msg);
      }
      if (ec || !v.is_object() || !v.as_object().if_contains("results") || !v.as_object().at("results").is_array())
        fail("reward service at {}: unexpected response: {}", impl_->o.endpoint, text.substr(0, 300));
      const auto& res = v.as_object().at("results").as_array();
      if (res.size() != e - b)
        fail("reward service at {}: {} results for {} samples", impl_->o.endpoint, res.size(), e - b);
      for (const auto& x : res) out.push_back(scored_from_json(x));
      done = true;
    }
    if (!done)
      fail("reward service at {}: no answer after {} attempts; last error: {}", impl_->o.endpoint, impl_->o.retries + 1,
           last);
  }
  return out;
}

ClientOptions client_options(const rewards::RewardsConfig& cfg) {
  ClientOptions o;
  static_cast<rewards::ClientOptions&>(o) = cfg.client;
  o.endpoint = cfg.endpoint;
  return o;
}

}  // namespace r1::service
