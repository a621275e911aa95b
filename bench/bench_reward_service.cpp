// Reward service throughput and latency over loopback: CONNECTIONS client threads, each with its
// own keep-alive connection, send math batches of BATCH samples for SECONDS; prints one JSON
// line with requests/s, samples/s and p50/p99 latency.
//   bench_reward_service [CONNECTIONS=64] [BATCH=64] [SECONDS=10] [SERVER_THREADS=0]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <thread>

#include <boost/json.hpp>

#include "rewards/service/client.hpp"
#include "rewards/service/service.hpp"

using namespace r1;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  const int conns = argc > 1 ? std::stoi(argv[1]) : 64;
  const int batch = argc > 2 ? std::stoi(argv[2]) : 64;
  const double secs = argc > 3 ? std::stod(argv[3]) : 10.0;
  const int threads = argc > 4 ? std::stoi(argv[4]) : 0;

  service::ServiceConfig cfg;
  cfg.service.port = 0;
  cfg.service.io_threads = 2;
  cfg.service.max_inflight = 8;
  cfg.service.max_queue = 1024;
  cfg.rewards.threads = threads;
  rewards::RewardEntry e;
  e.checker = "math";
  cfg.rewards.checkers = {e};
  service::Server srv(cfg, rewards::Registry::with_builtins());
  srv.start();

  // A varied math batch: integers, fractions, decimals, LaTeX, right and wrong.
  const char* forms[][2] = {{"\\boxed{42}", "42"},
                            {"\\boxed{\\frac{1}{2}}", "0.5"},
                            {"#### 1,234", "1234"},
                            {"The answer is 3/4.", "\\frac{3}{4}"},
                            {"\\boxed{2\\sqrt{2}}", "\\sqrt{8}"},
                            {"\\boxed{17}", "18"},
                            {"\\boxed{(1, 2)}", "(1,2)"},
                            {"\\boxed{x^2+2x+1}", "(x+1)^2"}};
  std::vector<rewards::Sample> samples;
  for (int i = 0; i < batch; ++i) {
    rewards::Sample s;
    s.prompt = "Problem " + std::to_string(i);
    s.completion = std::string("<think>work</think> ") + forms[i % 8][0];
    s.reference["answer"] = forms[i % 8][1];
    samples.push_back(std::move(s));
  }

  std::mutex m;
  std::vector<double> lat;
  std::atomic<uint64_t> errors{0};
  const auto end = Clock::now() + std::chrono::duration<double>(secs);
  std::vector<std::thread> ts;
  for (int c = 0; c < conns; ++c)
    ts.emplace_back([&] {
      service::ClientOptions o;
      o.endpoint = "http://127.0.0.1:" + std::to_string(srv.port());
      o.connections = 1;
      o.retries = 0;
      service::RewardClient client(o);
      std::vector<double> mine;
      while (Clock::now() < end) {
        auto t0 = Clock::now();
        try {
          auto r = client.score(samples);
          if (r.size() != samples.size()) errors++;
        } catch (const std::exception&) {
          errors++;
          continue;
        }
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      std::lock_guard lk(m);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  auto t0 = Clock::now();
  for (auto& t : ts) t.join();
  double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  srv.stop();
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, static_cast<size_t>(p * static_cast<double>(lat.size())))];
  };
  std::cout << boost::json::serialize(
                   boost::json::object{{"connections", conns},
                                       {"batch", batch},
                                       {"seconds", wall},
                                       {"requests", lat.size()},
                                       {"errors", errors.load()},
                                       {"requests_per_s", static_cast<double>(lat.size()) / wall},
                                       {"samples_per_s", static_cast<double>(lat.size()) * batch / wall},
                                       {"p50_ms", pct(0.50)},
                                       {"p99_ms", pct(0.99)}})
            << "\n";
}
