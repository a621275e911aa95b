// What the reward service answers, without sockets: routing (a target's path; a query string is
// ignored), validation of POST /v1/score before anything is queued, scoring, and the Prometheus
// metrics. server.cpp drives a Handler from connections; answer_raw() drives one from the bytes of
// a single request on the calling thread, with the same parser limits (fuzz/fuzz_service.cpp).
#pragma once
#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "rewards/scorer.hpp"
#include "rewards/service/service.hpp"

namespace r1::service {

constexpr uint64_t kHeaderLimit = 64 * 1024;  // bytes of request line and headers; more gets 431

enum class Route { healthz, metrics, score, other };
Route route_of(std::string_view target);  // by the path before any '?'
const char* route_name(Route r);          // the metrics label: "/v1/score", ..., "other"

struct Reply {
  int status = 200;  // HTTP status
  std::string body;
  std::string content_type = "application/json";
};
Reply json_error(int status, const std::string& msg, boost::json::object extra = {});

// A validated POST /v1/score: what a worker scores.
struct ScoreJob {
  std::vector<rewards::Sample> samples;
  std::string kind;  // one checker kind; "" scores with the service's [[rewards.checkers]]
};

// Counters and the latency histogram behind GET /metrics.
struct Metrics {
  static constexpr double kBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  static constexpr size_t kNumBuckets = sizeof kBuckets / sizeof kBuckets[0];
  mutable std::mutex m;
  std::map<std::pair<std::string, int>, uint64_t> requests;        // (route, status)
  std::map<std::pair<std::string, std::string>, uint64_t> checks;  // (checker part, status)
  uint64_t bucket[kNumBuckets + 1] = {};
  double latency_sum = 0;
  uint64_t latency_count = 0, samples = 0;
  std::atomic<int64_t> inflight{0}, queued{0}, connections{0}, buffered_bytes{0};
  std::atomic<uint64_t> rejected{0}, over_budget{0}, deadline_exceeded{0}, accept_errors{0};

  void request(const std::string& route, int status, double secs);
  void scored(const std::vector<rewards::Scored>& out);
};

class Handler {
 public:
  Handler(const ServiceConfig& cfg, rewards::Registry registry, std::shared_ptr<sandbox::Sandbox> sandbox);
  ~Handler();
  Handler(const Handler&) = delete;
  Handler& operator=(const Handler&) = delete;

  // Answers every request except a valid POST /v1/score, which comes back as the job to score.
  std::variant<Reply, ScoreJob> route(boost::beast::http::verb method, std::string_view target, const std::string& body,
                                      bool stopping);
  Reply score(const ScoreJob& job);  // thread-safe; a scoring failure is a 500 reply
  std::string metrics_text() const;
  Metrics& metrics() { return metrics_; }
  const ServiceConfig& config() const { return cfg_; }

 private:
  class Engine;
  std::variant<Reply, ScoreJob> parse_score(const std::string& body) const;
  ServiceConfig cfg_;
  std::shared_ptr<sandbox::Sandbox> sandbox_;
  std::unique_ptr<Engine> engine_;
  Metrics metrics_;
};

// One request given as raw HTTP/1.1 bytes, answered as a connection would answer its first request
// (header and body limits, routes, validation, scoring on this thread). Incomplete bytes are a 400.
Reply answer_raw(Handler& h, std::string_view raw);

}  // namespace r1::service
