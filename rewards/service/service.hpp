// rewards/service/: the reward service (HTTP/1.1 + JSON on Boost.Asio/Beast), its C++ client, and
// the backend abstraction the trainer scores through (in-process or remote). This header owns the
// server; client.hpp owns the client and the backend. docs/REWARD_SERVICE.md documents the API.
//
//   POST /v1/score  {"samples": [...], "checker": "math"?}  -> {"results": [...]} in order
//   GET  /healthz                                            -> {"status": "ok"}
//   GET  /metrics                                            -> Prometheus text
//
// Requests are read asynchronously (a slow client only holds its own connection), parsed and
// validated on the I/O threads (handler.hpp), and scored on `max_inflight` worker threads behind a
// queue of at most `max_queue` requests (full: 503). Each request has a deadline (504 past it);
// bodies over `max_body_kb` get 413, and a body that would take the bytes held over all
// connections past `max_buffered_mb` gets 503 before it is read; freed bodies go back to the OS.
// Out of descriptors, the accept loop backs off instead of spinning. Every error is a JSON
// {"error": ...} with a 4xx/5xx status; a handler exception never takes the server down. stop()
// (SIGTERM under `r1 rewards serve`) stops accepting, closes idle connections and returns once the
// requests in flight are answered.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/config_fields.hpp"
#include "rewards/options.hpp"
#include "rewards/sandbox/sandbox.hpp"

namespace r1::rewards {
class Registry;
}

namespace r1::service {

struct ServiceOptions {
#define R1_SERVICE_FIELDS(F)                                                                                \
  F(std::string, host, "127.0.0.1", "address to listen on (0.0.0.0: all interfaces)", !x.empty())           \
  F(int64_t, port, 8000, "TCP port (0: any free port)", x >= 0 && x <= 65535)                               \
  F(int64_t, io_threads, 2, "threads reading and writing HTTP", x >= 1 && x <= 256)                         \
  F(int64_t, max_inflight, 16, "requests scored at once", x >= 1 && x <= 4096)                              \
  F(int64_t, max_queue, 256, "requests waiting for a scoring slot; more get 503", x >= 0)                   \
  F(int64_t, max_body_kb, 16384, "largest request body; larger gets 413", x >= 1)                           \
  F(int64_t, max_buffered_mb, 512,                                                                          \
    "request bytes held at once over all connections (bodies read or being scored); beyond it 503", x >= 1) \
  F(int64_t, max_batch, 8192, "most samples in one request", x >= 1)                                        \
  F(int64_t, request_timeout_ms, 60000, "per-request deadline, queueing included; past it 504", x >= 1)     \
  F(int64_t, read_timeout_ms, 15000,                                                                        \
    "time a client has to send a whole request (and an idle keep-alive connection stays open)", x >= 1)     \
  F(int64_t, drain_timeout_ms, 30000, "on shutdown, longest wait for requests in flight", x >= 0)
  R1_CONFIG(ServiceOptions, R1_SERVICE_FIELDS)
};

// What `r1 rewards serve --config FILE` reads: [service], [sandbox] (the "code" checker's
// sandbox) and [rewards] (the default composition and declared plugins/commands).
struct ServiceConfig {
  ServiceOptions service;
  sandbox::SandboxOptions sandbox;
  rewards::RewardsConfig rewards;
};
ServiceConfig load_service_config(const std::filesystem::path& file, const std::vector<std::string>& overrides = {});

class Server {
 public:
  // Binds immediately (throws r1::Error when the port is taken). `registry` holds the checker
  // kinds it serves (rewards::make_reward_server passes every built-in and what cfg.rewards
  // declares); `sandbox`, when given, has its statistics exported in /metrics.
  Server(const ServiceConfig& cfg, rewards::Registry registry, std::shared_ptr<sandbox::Sandbox> sandbox = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const;  // the bound port (useful with port = 0)
  void start();           // serves on background threads
  void run();             // start() and block until stopped (SIGTERM/SIGINT stop it too)
  void stop();            // graceful: stop accepting, finish in-flight requests, then return
  std::string metrics_text() const;

 private:
  struct Impl;
  friend class Session;  // one HTTP connection (server.cpp)
  std::shared_ptr<Impl> impl_;
};

}  // namespace r1::service
