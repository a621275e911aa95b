// The reward service's C++ client, and the backend the trainer's reward stage scores through:
// in-process (a rewards::Scorer, the default) or remote (this client) when [rewards] endpoint is
// set. Both return the same rewards::Scored values.
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
#include "rewards/sandbox/sandbox.hpp"
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
  std::pair<int, std::string> request(const std::string& method, const std::string& target, const std::string& body = "");
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

// What the trainer's reward stage holds.
class RewardBackend {
 public:
  virtual ~RewardBackend() = default;
  virtual std::vector<rewards::Scored> score(const std::vector<rewards::Sample>& batch) = 0;
  virtual std::string describe() const = 0;  // "in-process (math, format)" or "remote http://..."
};

// In-process: a Scorer over Registry::for_config(cfg) plus the "code" checker (in `sandbox`, or
// the process-wide default sandbox). Remote: a RewardClient on client.endpoint scoring with the
// service's own composition.
std::unique_ptr<RewardBackend> make_reward_backend(const rewards::RewardsConfig& cfg, const ClientOptions& client,
                                                   std::shared_ptr<sandbox::Sandbox> sandbox = nullptr);

// Reads [rewards].endpoint and [rewards.client] from a run config, ignoring every other key.
ClientOptions load_client_options(const std::filesystem::path& file, const std::vector<std::string>& overrides = {});

}  // namespace r1::service
