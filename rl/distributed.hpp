// Data parallelism over LibTorch's c10d: a TCPStore rendezvous (torchrun's MASTER_ADDR/PORT, RANK,
// WORLD_SIZE, LOCAL_RANK, or SLURM's variables), Gloo on CPU and NCCL on GPUs. Gradients are
// summed in flat buckets whose all-reduce starts during backward, as soon as backward has produced
// each bucket's gradients (DDP's scheme); initial weights are broadcast from rank 0, and a weight
// checksum compared across ranks turns silent divergence into an error. Every collective has a
// timeout, so a dead rank makes the others fail with a clear error instead of hanging.
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

 private:
  struct Impl;
  LaunchEnv env_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace r1
