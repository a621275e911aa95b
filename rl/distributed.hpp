// Data parallelism over LibTorch's c10d: a TCPStore rendezvous (torchrun's MASTER_ADDR/PORT, RANK,
// WORLD_SIZE, LOCAL_RANK, or SLURM's variables), Gloo on CPU and NCCL on GPUs. Gradients are
// summed in flat buckets whose all-reduce starts during backward, as soon as backward has produced
// each bucket's gradients (DDP's scheme); initial weights are broadcast from rank 0, and a weight
// checksum compared across ranks turns silent divergence into an error. Every collective has a
// timeout, so a dead rank makes the others fail with a clear error instead of hanging: each rank
// beats a heartbeat counter in the rendezvous store every second, and a failed collective names the
// ranks whose heartbeat stopped. Work that one rank does alone (rank 0's checkpoint writing) is
// awaited by the others through the store, for as long as that rank's heartbeat beats, not within
// the collective timeout. ZeRO's collectives (reduce-scatter, all-gather) live here too (rl/zero.hpp).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rl/options.hpp"

namespace r1 {

// Where this process sits in the job, from the environment.
struct LaunchEnv {
  int64_t rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  // torchrun's RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT, else SLURM_PROCID /
  // SLURM_NTASKS / SLURM_LOCALID (MASTER_ADDR must still be set, e.g. from scontrol), else 1 rank.
  static LaunchEnv from_environment();
};

// The device of this rank: "cuda" becomes cuda:LOCAL_RANK when there is more than one rank; an
// explicit "cuda:N" with more than one rank is a ConfigError (every rank would share it).
std::string device_of_rank(const std::string& device, const LaunchEnv& env);
// device_of_rank, made the current CUDA device when it is one.
std::string bind_device(const std::string& device, const LaunchEnv& env);

class Distributed {
 public:
  // World size 1 makes every call a no-op.
  Distributed(const LaunchEnv& env, const DistributedOptions& options, const at::Device& device);
  ~Distributed();
  int64_t rank() const { return env_.rank; }
  int64_t world_size() const { return env_.world_size; }
  bool active() const { return env_.world_size > 1; }

  void allreduce_sum(std::vector<at::Tensor>& tensors);
  std::vector<double> sum(std::vector<double> values);  // element-wise over ranks
  std::vector<double> max(std::vector<double> values);
  // Overlapped gradient sum. attach_grads() puts a post-accumulate hook on every parameter and cuts
  // them into buckets in reverse order (the order backward finishes them). Between arm_grad_sync()
  // and finish_grad_sync(), the backward passes' hooks launch each bucket's all-reduce once all of
  // its gradients are final, in bucket order on every rank; finish_grad_sync() launches what is left,
  // waits, and writes the sums into .grad(). Arm only around the last backward before a step.
  void attach_grads(const std::vector<at::Tensor>& params);
  void arm_grad_sync();
  void finish_grad_sync();
  struct GradSyncStats {
    int64_t buckets = 0;         // per sync
    int64_t launched_early = 0;  // summed over syncs: buckets whose all-reduce began inside backward
    int64_t syncs = 0;
  };
  GradSyncStats grad_sync_stats() const;
  void broadcast(const std::vector<at::Tensor>& params, int64_t root = 0);
  // Throws r1::Error naming the ranks when `checksum` differs across ranks.
  void check_same(uint64_t checksum, const std::string& what);
  void barrier();

  // A collective in flight (ZeRO's reduce-scatter and all-gather); wait() before reading its output.
  struct Work;
  class Pending {
   public:
    Pending() = default;
    void wait();  // no-op when empty
    bool empty() const { return !work_; }

   private:
    friend class Distributed;
    std::shared_ptr<Work> work_;
  };
  // out [n / W] = this rank's chunk of the element-wise sum over ranks of in [n]; n divides by W.
  Pending reduce_scatter(const at::Tensor& in, const at::Tensor& out);
  // out [W * n] = every rank's chunk [n], in rank order.
  Pending all_gather(const at::Tensor& chunk, const at::Tensor& out);

  // Work that `rank` does alone (a checkpoint's Hugging Face files): it calls done(key) when finished
  // (with an error message when it failed), the others wait_for(key, rank), which returns that
  // message, waits as long as `rank` is alive, and fails naming it when its heartbeat stops.
  void done(const std::string& key, const std::string& error = "");
  std::string wait_for(const std::string& key, int64_t rank);
  // The ranks whose heartbeat has stopped, as "rank 1" / "ranks 1, 3" / "" (takes ~3 s to tell).
  std::string dead_ranks();

 private:
  struct Impl;
  LaunchEnv env_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace r1
