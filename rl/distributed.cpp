#include "rl/distributed.hpp"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef R1_WITH_CUDA
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>

#include "common/error.hpp"

namespace r1 {

namespace {

std::optional<int64_t> env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  long long x = std::strtoll(v, &end, 10);
  R1_CHECK(end && *end == '\0', "environment variable {}='{}' is not an integer", name, v);
  return x;
}

}  // namespace

LaunchEnv LaunchEnv::from_environment() {
  LaunchEnv e;
  if (auto r = env_int("RANK")) {
    e.rank = *r;
    e.world_size = env_int("WORLD_SIZE").value_or(1);
    e.local_rank = env_int("LOCAL_RANK").value_or(e.rank);
  } else if (auto p = env_int("SLURM_PROCID")) {
    e.rank = *p;
    e.world_size = env_int("SLURM_NTASKS").value_or(1);
    e.local_rank = env_int("SLURM_LOCALID").value_or(0);
  }
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  e.master_port = env_int("MASTER_PORT").value_or(29500);
  R1_CHECK(e.world_size >= 1 && e.rank >= 0 && e.rank < e.world_size,
           "RANK={} is outside WORLD_SIZE={} (set by your launcher: r1 launch, torchrun or srun)", e.rank, e.world_size);
  return e;
}

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> pg;
  DistributedOptions options;
  at::Device device{at::kCPU};

  void wait(const c10::intrusive_ptr<c10d::Work>& w, const char* what) {
    try {
      w->wait(std::chrono::milliseconds(options.timeout_s * 1000));
    } catch (const std::exception& e) {
      fail("data parallel: {} failed or timed out after {}s (did another rank die?): {}", what, options.timeout_s,
           e.what());
    }
  }
};

Distributed::Distributed(const LaunchEnv& env, const DistributedOptions& o, const at::Device& device)
    : env_(env), impl_(std::make_unique<Impl>()) {
  impl_->options = o;
  impl_->device = device;
  if (!active()) return;
  const auto timeout = std::chrono::milliseconds(o.timeout_s * 1000);
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = env.rank == 0;
  so.numWorkers = static_cast<size_t>(env.world_size);
  so.timeout = timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    fail("data parallel: rendezvous at {}:{} failed for rank {} of {}: {}", env.master_addr, env.master_port, env.rank,
         env.world_size, e.what());
  }
  std::string backend = o.backend;
  if (backend == "auto") backend = device.is_cuda() ? "nccl" : "gloo";
  if (backend == "nccl") {
#ifdef R1_WITH_CUDA
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world_size, opts);
#else
    fail("data parallel: backend nccl needs a CUDA build (configure with -DR1_CUDA=ON)");
#endif
  } else {
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->timeout = timeout;
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(env.master_addr));
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, opts);
  }
}

Distributed::~Distributed() = default;

void Distributed::allreduce_sum(std::vector<at::Tensor>& tensors) {
  if (!active()) return;
  impl_->wait(impl_->pg->allreduce(tensors), "all-reduce");
}

std::vector<double> Distributed::sum(std::vector<double> values) {
  if (!active() || values.empty()) return values;
  std::vector<at::Tensor> t = {at::tensor(values, at::kDouble).to(impl_->device)};
  allreduce_sum(t);
  at::Tensor c = t[0].to(at::kCPU);
  for (size_t i = 0; i < values.size(); ++i) values[i] = c[static_cast<int64_t>(i)].item<double>();
  return values;
}

double Distributed::max(double value) {
  if (!active()) return value;
  std::vector<at::Tensor> t = {at::tensor({value}, at::kDouble).to(impl_->device)};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  impl_->wait(impl_->pg->allreduce(t, o), "all-reduce (max)");
  return t[0].item<double>();
}

void Distributed::allreduce_grads(const std::vector<at::Tensor>& params) {
  if (!active()) return;
  // Flat buckets of gradients of one dtype, summed in place.
  const int64_t bucket_bytes = impl_->options.bucket_mb << 20;
  std::vector<at::Tensor> bucket;
  int64_t bytes = 0;
  auto flush = [&] {
    if (bucket.empty()) return;
    std::vector<at::Tensor> flat = {at::cat([&] {
      std::vector<at::Tensor> v;
      for (auto& g : bucket) v.push_back(g.reshape({-1}));
      return v;
    }())};
    allreduce_sum(flat);
    int64_t off = 0;
    for (auto& g : bucket) {
      g.copy_(flat[0].narrow(0, off, g.numel()).view_as(g));
      off += g.numel();
    }
    bucket.clear();
    bytes = 0;
  };
  for (const auto& p : params) {
    at::Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!bucket.empty() && bucket[0].scalar_type() != g.scalar_type()) flush();
    bucket.push_back(g);
    bytes += g.numel() * g.element_size();
    if (bytes >= bucket_bytes) flush();
  }
  flush();
}

void Distributed::broadcast(const std::vector<at::Tensor>& params, int64_t root) {
  if (!active()) return;
  for (const auto& p : params) {
    std::vector<at::Tensor> t = {p.detach()};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    impl_->wait(impl_->pg->broadcast(t, o), "weight broadcast");
  }
}

void Distributed::check_same(uint64_t checksum, const std::string& what) {
  if (!active()) return;
  // Compare as two 32-bit halves in doubles (exact), via max and -max (= min).
  const double hi = static_cast<double>(checksum >> 32), lo = static_cast<double>(checksum & 0xffffffffULL);
  const double max_hi = max(hi), min_hi = -max(-hi), max_lo = max(lo), min_lo = -max(-lo);
  if (max_hi != min_hi || max_lo != min_lo)
    fail("data parallel: {} differs across ranks (rank {} has {:016x}): the replicas diverged", what, rank(), checksum);
}

void Distributed::barrier() {
  if (!active()) return;
  impl_->wait(impl_->pg->barrier(), "barrier");
}

}  // namespace r1
