// The reward service's C++ client. rewards/backend.hpp wraps it as the remote RewardBackend, used
// when [rewards] endpoint is set; it returns the same rewards::Scored values as in-process scoring.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/config_fields.hpp"
#include "common/error.hpp"
#include "rewards/checker.hpp"
#include "rewards/options.hpp"
#include "rewards/scorer.hpp"

namespace r1::service {

// Client settings; in a run config they sit next to the endpoint:
//   [rewards]
//   endpoint = "http://10.0.0.5:8000"
//   [rewards.client]
//   timeout_ms = 120000
// The client's options ([rewards.client]) plus the service address ([rewards] endpoint).
struct ClientOptions : rewards::ClientOptions {
  std::string endpoint;  // http://host:port; empty = score in-process
};
ClientOptions client_options(const rewards::RewardsConfig& cfg);

// The request was refused (4xx): retrying cannot help. `status` is the HTTP status.
class RequestError : public r1::Error {
 public:
  RequestError(int status, const std::string& msg) : Error(msg), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

class RewardClient {
 public:
  explicit RewardClient(ClientOptions o);
  ~RewardClient();
  RewardClient(const RewardClient&) = delete;
  RewardClient& operator=(const RewardClient&) = delete;

  // Scores a batch with the service's composition (checker empty) or one checker kind. Retries
  // connection errors, timeouts and 5xx with exponential backoff; throws RequestError on 4xx and
  // r1::Error once retries are exhausted. Thread-safe.
  std::vector<rewards::Scored> score(const std::vector<rewards::Sample>& samples, const std::string& checker = "");

  // One raw exchange (no retries), for tools and tests: status and body.
  std::pair<int, std::string> request(const std::string& method, const std::string& target,
                                      const std::string& body = "");
  bool healthy();

  struct Stats {
    uint64_t requests = 0, retries = 0, reconnects = 0;
  };
  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// JSON of a sample for POST /v1/score, and a Scored back from a result object.
boost::json::object sample_to_json(const rewards::Sample& s);
rewards::Scored scored_from_json(const boost::json::value& v);

}  // namespace r1::service
