// A cooperative per-sample deadline. Long-running checker code calls `check()` at loop heads and
// recursion entries; past the deadline it throws DeadlineExceeded, which the scorer turns into a
// "timeout" result. No signals are involved, so it is safe in any thread.
#pragma once
#include <chrono>
#include <stdexcept>

namespace r1::rewards {

struct DeadlineExceeded : std::runtime_error {
  DeadlineExceeded() : std::runtime_error("timeout") {}
};

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  Deadline() : end_(Clock::time_point::max()) {}
  explicit Deadline(Clock::time_point end) : end_(end) {}
  static Deadline after(std::chrono::milliseconds ms) { return Deadline(Clock::now() + ms); }

  bool expired() const { return Clock::now() >= end_; }
  void check() const {
    if (expired()) throw DeadlineExceeded();
  }
  // Cheap variant for hot loops: reads the clock once every 64 calls.
  void tick(unsigned& counter) const {
    if ((++counter & 63u) == 0) check();
  }
  Clock::time_point end() const { return end_; }
  std::chrono::milliseconds remaining() const {
    auto now = Clock::now();
    if (now >= end_) return std::chrono::milliseconds(0);
    if (end_ == Clock::time_point::max()) return std::chrono::milliseconds::max();
    return std::chrono::duration_cast<std::chrono::milliseconds>(end_ - now);
  }

 private:
  Clock::time_point end_;
};

}  // namespace r1::rewards
