// The reward service's answers: routes, request validation, scoring and metrics (handler.hpp).
#include "rewards/service/handler.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sstream>

#include "common/utf8.hpp"
#include "rewards/sandbox/code_checker.hpp"

namespace r1::service {

namespace http = boost::beast::http;

Route route_of(std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  if (path == "/v1/score") return Route::score;
  if (path == "/healthz") return Route::healthz;
  if (path == "/metrics") return Route::metrics;
  return Route::other;
}

const char* route_name(Route r) {
  switch (r) {
    case Route::score: return "/v1/score";
    case Route::healthz: return "/healthz";
    case Route::metrics: return "/metrics";
    default: return "other";
  }
}

Reply json_error(int status, const std::string& msg, boost::json::object extra) {
  extra["error"] = utf8::repair(msg);  // messages may quote request bytes
  return {status, boost::json::serialize(extra) + "\n"};
}

// ---- Metrics ------------------------------------------------------------------------------------

void Metrics::request(const std::string& route, int status, double secs) {
  std::lock_guard lk(m);
  requests[{route, status}]++;
  size_t b = 0;
  while (b < kNumBuckets && secs > kBuckets[b]) ++b;
  bucket[b]++;
  latency_sum += secs;
  latency_count++;
}

void Metrics::scored(const std::vector<rewards::Scored>& out) {
  std::lock_guard lk(m);
  samples += out.size();
  for (const auto& s : out)
    for (const auto& p : s.parts) checks[{p.name, rewards::status_name(p.result.status)}]++;
}

namespace {

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

void counter(std::ostream& os, const char* name, const char* help, uint64_t v) {
  os << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n" << name << " " << v << "\n";
}

void gauge(std::ostream& os, const char* name, int64_t v) {
  os << "# TYPE " << name << " gauge\n" << name << " " << v << "\n";
}

void write_latency(std::ostream& os, const Metrics& m) {
  os << "# HELP r1_requests_total HTTP requests by route and status.\n# TYPE r1_requests_total counter\n";
  for (const auto& [k, n] : m.requests)
    os << "r1_requests_total{route=\"" << k.first << "\",code=\"" << k.second << "\"} " << n << "\n";
  os << "# HELP r1_request_duration_seconds Request latency, read to response.\n"
     << "# TYPE r1_request_duration_seconds histogram\n";
  uint64_t cum = 0;
  for (size_t b = 0; b < Metrics::kNumBuckets; ++b) {
    cum += m.bucket[b];
    os << "r1_request_duration_seconds_bucket{le=\"" << Metrics::kBuckets[b] << "\"} " << cum << "\n";
  }
  cum += m.bucket[Metrics::kNumBuckets];
  os << "r1_request_duration_seconds_bucket{le=\"+Inf\"} " << cum << "\n";
  os << "r1_request_duration_seconds_sum " << m.latency_sum << "\nr1_request_duration_seconds_count " << m.latency_count
     << "\n";
}

void write_checks(std::ostream& os, const Metrics& m) {
  counter(os, "r1_samples_total", "Samples scored.", m.samples);
  os << "# HELP r1_checks_total Checks by checker (part name) and status (ok, timeout, error).\n"
     << "# TYPE r1_checks_total counter\n";
  uint64_t timeouts = 0;
  for (const auto& [k, n] : m.checks) {
    os << "r1_checks_total{checker=\"" << escape_label(k.first) << "\",status=\"" << k.second << "\"} " << n << "\n";
    if (k.second == "timeout") timeouts += n;
  }
  counter(os, "r1_check_timeouts_total", "Checks that hit their deadline.", timeouts);
}

void write_sandbox(std::ostream& os, const sandbox::Sandbox* sb) {
  auto vc = sandbox::verdict_counts();
  os << "# HELP r1_sandbox_verdicts_total Code checker verdicts.\n# TYPE r1_sandbox_verdicts_total counter\n";
  for (int i = 0; i < sandbox::kVerdictCount; ++i)
    os << "r1_sandbox_verdicts_total{verdict=\"" << sandbox::verdict_name(static_cast<sandbox::Verdict>(i)) << "\"} "
       << vc.n[i] << "\n";
  if (!sb) return;
  auto st = sb->stats();
  os << "# HELP r1_sandbox_runs_total Sandbox runs and how they ended.\n# TYPE r1_sandbox_runs_total counter\n";
  os << "r1_sandbox_runs_total " << st.runs << "\n";
  os << "r1_sandbox_timeouts_total " << st.timeouts << "\nr1_sandbox_output_limits_total " << st.output_limits
     << "\nr1_sandbox_cpu_limits_total " << st.cpu_limits << "\nr1_sandbox_spawn_failures_total " << st.spawn_failures
     << "\n";
}

}  // namespace

// ---- The scoring engine: the configured composition and one scorer per checker kind ------------

class Handler::Engine {
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

// ---- Handler --------------------------------------------------------------------------------------

Handler::Handler(const ServiceConfig& cfg, rewards::Registry registry, std::shared_ptr<sandbox::Sandbox> sandbox)
    : cfg_(cfg), sandbox_(std::move(sandbox)), engine_(std::make_unique<Engine>(cfg.rewards, std::move(registry))) {}

Handler::~Handler() = default;

std::variant<Reply, ScoreJob> Handler::route(http::verb method, std::string_view target, const std::string& body,
                                             bool stopping) {
  const Route r = route_of(target);
  if (r == Route::healthz) {
    if (method != http::verb::get && method != http::verb::head) return json_error(405, "use GET /healthz");
    if (stopping) return json_error(503, "shutting down");
    boost::json::object o{{"status", "ok"}, {"inflight", metrics_.inflight.load()}, {"queued", metrics_.queued.load()}};
    return Reply{200, boost::json::serialize(o) + "\n"};
  }
  if (r == Route::metrics) {
    if (method != http::verb::get) return json_error(405, "use GET /metrics");
    return Reply{200, metrics_text(), "text/plain; version=0.0.4"};
  }
  if (r == Route::other) {
    const std::string path(target.substr(0, target.find('?')));
    return json_error(404,
                      "no such endpoint: " + path.substr(0, 200) + " (POST /v1/score, GET /healthz, GET /metrics)");
  }
  if (method != http::verb::post) return json_error(405, "use POST /v1/score");
  if (stopping) return json_error(503, "shutting down");
  return parse_score(body);
}

// Everything about a /v1/score body is checked here, before it is queued.
std::variant<Reply, ScoreJob> Handler::parse_score(const std::string& body) const {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  if (ec) return json_error(400, "malformed JSON: " + ec.message());
  if (!v.is_object()) return json_error(400, "the body must be a JSON object {\"samples\": [...]}");
  const auto& o = v.as_object();
  ScoreJob job;
  if (auto* c = o.if_contains("checker"); c && !c->is_null()) {
    if (!c->is_string()) return json_error(400, "\"checker\" must be a string");
    job.kind = std::string(c->as_string());
    if (!engine_->has(job.kind)) {
      boost::json::array known;
      for (const auto& k : engine_->kinds()) known.push_back(boost::json::string(k));
      return json_error(400, "unknown checker '" + job.kind.substr(0, 200) + "'", {{"known", known}});
    }
  } else if (!engine_->has_composition()) {
    return json_error(400, "no \"checker\" given and the service has no [[rewards.checkers]] composition");
  }
  auto* sv = o.if_contains("samples");
  if (!sv) return json_error(400, "missing \"samples\" (an array of sample objects)");
  if (!sv->is_array()) return json_error(400, "\"samples\" must be an array");
  const auto& arr = sv->as_array();
  if (arr.empty()) return json_error(400, "\"samples\" is empty");
  if (static_cast<int64_t>(arr.size()) > cfg_.service.max_batch)
    return json_error(413, "more than " + std::to_string(cfg_.service.max_batch) + " samples in one request");
  job.samples.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    try {
      job.samples.push_back(rewards::sample_from_json(arr[i], "samples[" + std::to_string(i) + "]"));
    } catch (const std::exception& e) {
      return json_error(400, e.what());
    }
  }
  return job;
}

Reply Handler::score(const ScoreJob& job) {
  metrics_.inflight++;
  Reply r;
  try {
    auto out = engine_->score(job.samples, job.kind);
    metrics_.scored(out);
    boost::json::array results;
    results.reserve(out.size());
    for (const auto& s : out) results.push_back(rewards::to_json(s));
    r = {200, boost::json::serialize(boost::json::object{{"results", std::move(results)}}) + "\n"};
  } catch (const std::exception& e) {
    r = json_error(500, std::string("scoring failed: ") + e.what());
  }
  metrics_.inflight--;
  return r;
}

std::string Handler::metrics_text() const {
  std::ostringstream os;
  {
    std::lock_guard lk(metrics_.m);
    write_latency(os, metrics_);
    write_checks(os, metrics_);
  }
  counter(os, "r1_request_deadline_exceeded_total", "Requests answered 504.", metrics_.deadline_exceeded.load());
  counter(os, "r1_requests_rejected_total", "Requests answered 503 because the queue was full.",
          metrics_.rejected.load());
  counter(os, "r1_requests_over_budget_total",
          "Requests answered 503 because the buffered request bytes would pass max_buffered_mb.",
          metrics_.over_budget.load());
  counter(os, "r1_accept_errors_total", "Failed accepts (out of descriptors: the accept loop backs off).",
          metrics_.accept_errors.load());
  gauge(os, "r1_inflight_requests", metrics_.inflight.load());
  gauge(os, "r1_queued_requests", metrics_.queued.load());
  gauge(os, "r1_open_connections", metrics_.connections.load());
  gauge(os, "r1_buffered_request_bytes", metrics_.buffered_bytes.load());
  write_sandbox(os, sandbox_.get());
  return os.str();
}

// ---- One request from raw bytes ----------------------------------------------------------------

Reply answer_raw(Handler& h, std::string_view raw) {
  http::request_parser<http::string_body> parser;
  parser.body_limit(static_cast<uint64_t>(h.config().service.max_body_kb) * 1024);
  parser.header_limit(kHeaderLimit);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t used = 0;
  while (!ec && used < raw.size() && !parser.is_done()) {
    const size_t n = parser.put(boost::asio::buffer(raw.data() + used, raw.size() - used), ec);
    if (n == 0) break;
    used += n;
  }
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (ec == http::error::body_limit) return json_error(413, "request body too large");
  if (ec == http::error::header_limit) return json_error(431, "headers too large");
  if (ec || !parser.is_done()) return json_error(400, "bad HTTP request: " + ec.message());
  const auto& req = parser.get();
  auto routed = h.route(req.method(), req.target(), req.body(), false);
  if (auto* job = std::get_if<ScoreJob>(&routed)) return h.score(*job);
  return std::get<Reply>(std::move(routed));
}

}  // namespace r1::service
