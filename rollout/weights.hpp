// Weight sync from the trainer to rollout workers. The trainer publishes a snapshot with a version
// number and a checksum; a worker installs a whole snapshot (never a mix of two versions) before
// its next generation, recomputes the checksum of the weights it will sample from, and fails on a
// mismatch. Every sample records the version that generated it.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "policy/model.hpp"

namespace r1 {

// 64-bit checksum over parameter names, shapes, dtypes and bytes, in name order: each tensor
// hashed where it lies (CPU tensors in place and in parallel; a device tensor copied to the host
// one at a time), the hashes combined in order.
uint64_t weights_checksum(torch::nn::Module& model);

// Copies `src`'s trained parameters (those that require grad) into `dst`'s in place, without any
// host copy, and checks the checksums of both agree; returns it. Names and shapes must match.
uint64_t copy_weights(torch::nn::Module& dst, torch::nn::Module& src);

struct WeightSnapshot {
  int64_t version = 0;
  uint64_t checksum = 0;
  std::vector<std::pair<std::string, at::Tensor>> tensors;  // CPU copies, name order
};

class WeightStore {
 public:
  // Keeps the newest `keep` snapshots, so work requested against an older version can still get it.
  explicit WeightStore(int64_t keep = 2) : keep_(keep) {}
  // Copies the trainer's trained parameters (those that require grad: all of them, or only the
  // LoRA adapters, whose frozen base the workers share) into a new snapshot and returns their
  // checksum. With copy = false
  // (workers that sample from the trainer's own module) the snapshot records the version alone:
  // no tensors, checksum 0.
  uint64_t publish(torch::nn::Module& trainer_model, int64_t version, bool copy = true);
  std::shared_ptr<const WeightSnapshot> latest() const;
  std::shared_ptr<const WeightSnapshot> get(int64_t version) const;  // throws if no longer kept
  int64_t version() const;                                           // -1 before the first publish

 private:
  mutable std::mutex mu_;
  int64_t keep_;
  std::map<int64_t, std::shared_ptr<const WeightSnapshot>> snaps_;
};

// Installs `snap` into `model` if it is newer than `*installed_version`; verifies the checksum of
// the installed weights against the trainer's and throws r1::Error on a mismatch.
bool install_weights(torch::nn::Module& model, const WeightSnapshot& snap, int64_t* installed_version);

}  // namespace r1
