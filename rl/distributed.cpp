#include "rl/distributed.hpp"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef R1_WITH_CUDA
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <unordered_map>

#ifdef R1_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <fmt/ranges.h>

#include "common/error.hpp"
#include "policy/device.hpp"

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
           "RANK={} is outside WORLD_SIZE={} (set by your launcher: r1 launch, torchrun or srun)", e.rank,
           e.world_size);
  return e;
}

std::string device_of_rank(const std::string& device, const LaunchEnv& env) {
  if (env.world_size == 1 || device.rfind("cuda", 0) != 0) return device;
  if (device != "cuda")
    throw ConfigError(
        fmt::format("model.device = \"{}\" names one GPU, but there are {} ranks: set \"cuda\" and each rank binds "
                    "cuda:LOCAL_RANK (docs/DISTRIBUTED.md)",
                    device, env.world_size));
  return fmt::format("cuda:{}", env.local_rank);
}

std::string bind_device(const std::string& device, const LaunchEnv& env) {
  const std::string bound = device_of_rank(device, env);
#ifdef R1_WITH_CUDA
  if (bound.rfind("cuda:", 0) == 0) c10::cuda::set_device(parse_device(bound).index());
#endif
  return bound;
}

namespace {

constexpr auto kBeat = std::chrono::seconds(1);  // heartbeat period
constexpr int kBeatsToDeath = 3;                 // a rank whose counter stands still this long is dead

std::string beat_key(int64_t rank) { return fmt::format("r1/beat/{}", rank); }

}  // namespace

struct Distributed::Work {
  c10::intrusive_ptr<c10d::Work> work;
  Distributed* dist = nullptr;
  const char* what = "";
};

// One all-reduce unit of the overlapped gradient sync.
struct GradBucket {
  std::vector<at::Tensor> params;  // in the order backward tends to finish them
  int64_t ready = 0;               // gradients final in this sync
  at::Tensor flat;                 // [sum of numel] while in flight
  c10::intrusive_ptr<c10d::Work> work;
};

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> pg;
  DistributedOptions options;
  at::Device device{at::kCPU};

  // Overlapped gradient sync state. Hooks run on autograd's threads: `mu` guards all of it.
  std::mutex mu;
  std::vector<GradBucket> buckets;
  std::unordered_map<const void*, size_t> bucket_of;  // TensorImpl* -> bucket
  size_t next_launch = 0;  // buckets launch strictly in order, so every rank issues the same sequence
  bool armed = false;
  GradSyncStats stats;

  void launch(GradBucket& b) {
    std::vector<at::Tensor> parts;
    for (auto& p : b.params) {
      at::Tensor g = p.grad();
      parts.push_back(g.defined() ? g.reshape({-1}) : at::zeros({p.numel()}, p.options()));  // unused: zero
    }
    std::vector<at::Tensor> flat = {at::cat(parts)};
    b.flat = flat[0];
    b.work = pg->allreduce(flat);
  }
  void launch_ready_in_order(bool early) {
    while (next_launch < buckets.size() &&
           buckets[next_launch].ready == static_cast<int64_t>(buckets[next_launch].params.size())) {
      launch(buckets[next_launch++]);
      stats.launched_early += early;
    }
  }
  void on_grad_ready(const at::Tensor& p) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed) return;
    auto it = bucket_of.find(p.unsafeGetTensorImpl());
    if (it == bucket_of.end()) return;
    ++buckets[it->second].ready;
    launch_ready_in_order(true);
  }

  Distributed* owner = nullptr;
  void wait(const c10::intrusive_ptr<c10d::Work>& w, const char* what) {
    try {
      w->wait(std::chrono::milliseconds(options.timeout_s * 1000));
    } catch (const std::exception& e) {
      const std::string dead = owner->dead_ranks();
      fail("data parallel: {} failed or timed out after {}s: {}: {}", what, options.timeout_s,
           dead.empty() ? "every rank's heartbeat still beats (a rank is stuck, or the network failed)"
                        : dead + " died (its heartbeat stopped)",
           e.what());
    }
  }

  // Heartbeat: a counter in the store, beaten over a connection of its own.
  c10::intrusive_ptr<c10d::Store> beat_store;
  std::thread beat;
  std::atomic<bool> stop{false};
  void start_heartbeat(const LaunchEnv& env, const c10d::TCPStoreOptions& base) {
    c10d::TCPStoreOptions so = base;
    so.isServer = false;
    so.numWorkers = std::nullopt;
    so.waitWorkers = false;
    beat_store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    beat_store->add(beat_key(env.rank), 1);
    beat = std::thread([this, key = beat_key(env.rank)] {
      auto next = std::chrono::steady_clock::now() + kBeat;
      while (!stop.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (std::chrono::steady_clock::now() < next) continue;
        next += kBeat;
        try {
          beat_store->add(key, 1);
        } catch (const std::exception&) {
          return;  // the store's host is gone: the collectives report it
        }
      }
    });
  }
  ~Impl() {
    stop = true;
    if (beat.joinable()) beat.join();
  }
};

Distributed::Distributed(const LaunchEnv& env, const DistributedOptions& o, const at::Device& device)
    : env_(env), impl_(std::make_unique<Impl>()) {
  impl_->options = o;
  impl_->device = device;
  impl_->owner = this;
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
  DistBackend backend = o.backend;
  if (backend == DistBackend::automatic) backend = device.is_cuda() ? DistBackend::nccl : DistBackend::gloo;
  if (backend == DistBackend::nccl) {
#ifdef R1_WITH_CUDA
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world_size, opts);
    impl_->pg->setBoundDeviceId(device);  // this rank's GPU (bind_device), communicators created eagerly on it
#else
    fail("data parallel: backend nccl needs a CUDA build (configure with -DR1_CUDA=ON)");
#endif
  } else {
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->timeout = timeout;
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(env.master_addr));
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, opts);
  }
  impl_->start_heartbeat(env, so);
}

Distributed::~Distributed() {
  if (!impl_) return;
  for (auto& b : impl_->buckets)  // the hooks point at this object
    for (auto& p : b.params) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

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

std::vector<double> Distributed::max(std::vector<double> values) {
  if (!active() || values.empty()) return values;
  std::vector<at::Tensor> t = {at::tensor(values, at::kDouble).to(impl_->device)};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  impl_->wait(impl_->pg->allreduce(t, o), "all-reduce (max)");
  at::Tensor c = t[0].to(at::kCPU);
  for (size_t i = 0; i < values.size(); ++i) values[i] = c[static_cast<int64_t>(i)].item<double>();
  return values;
}

namespace {

struct SyncHook : torch::autograd::PostAccumulateGradHook {
  explicit SyncHook(std::function<void(const at::Tensor&)> f) : fn(std::move(f)) {}
  void operator()(const torch::autograd::Variable& tensor) override { fn(tensor); }
  std::function<void(const at::Tensor&)> fn;
};

}  // namespace

void Distributed::attach_grads(const std::vector<at::Tensor>& params) {
  if (!active()) return;
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lock(im.mu);
  R1_CHECK(im.buckets.empty(), "data parallel: attach_grads called twice");
  const double cap = im.options.bucket_mb * 1024.0 * 1024.0;
  double bytes = 0;
  for (auto it = params.rbegin(); it != params.rend(); ++it) {  // backward finishes the last layers first
    const at::Tensor& p = *it;
    if (!p.requires_grad()) continue;
    const double sz = static_cast<double>(p.numel() * p.element_size());
    if (im.buckets.empty() || bytes + sz > cap || im.buckets.back().params[0].scalar_type() != p.scalar_type()) {
      im.buckets.emplace_back();
      bytes = 0;
    }
    im.buckets.back().params.push_back(p);
    bytes += sz;
    im.bucket_of[p.unsafeGetTensorImpl()] = im.buckets.size() - 1;
    torch::autograd::impl::set_post_acc_grad_hooks(
        p, std::make_unique<SyncHook>([&im](const at::Tensor& t) { im.on_grad_ready(t); }));
  }
  im.stats.buckets = static_cast<int64_t>(im.buckets.size());
}

void Distributed::arm_grad_sync() {
  if (!active()) return;
  std::lock_guard<std::mutex> lock(impl_->mu);
  R1_CHECK(!impl_->buckets.empty(), "data parallel: arm_grad_sync before attach_grads");
  for (auto& b : impl_->buckets) b.ready = 0, b.work.reset(), b.flat = at::Tensor();
  impl_->next_launch = 0;
  impl_->armed = true;
}

void Distributed::finish_grad_sync() {
  if (!active()) return;
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lock(im.mu);
  R1_CHECK(im.armed, "data parallel: finish_grad_sync without arm_grad_sync");
  im.armed = false;
  for (auto& b : im.buckets) b.ready = static_cast<int64_t>(b.params.size());  // launch what backward did not
  im.launch_ready_in_order(false);
  for (auto& b : im.buckets) {
    im.wait(b.work, "gradient all-reduce");
    int64_t off = 0;
    for (auto& p : b.params) {
      at::Tensor sum = b.flat.narrow(0, off, p.numel()).view_as(p);
      if (p.grad().defined())
        p.mutable_grad().copy_(sum);
      else
        p.mutable_grad() = sum.clone();
      off += p.numel();
    }
    b.flat = at::Tensor(), b.work.reset();
  }
  ++im.stats.syncs;
}

Distributed::GradSyncStats Distributed::grad_sync_stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
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
  const std::vector<double> m = max({hi, -hi, lo, -lo});  // one collective
  if (m[0] != -m[1] || m[2] != -m[3])
    fail("data parallel: {} differs across ranks (rank {} has {:016x}): the replicas diverged", what, rank(), checksum);
}

void Distributed::barrier() {
  if (!active()) return;
  impl_->wait(impl_->pg->barrier(), "barrier");
}

void Distributed::Pending::wait() {
  if (!work_) return;
  work_->dist->impl_->wait(work_->work, work_->what);
  work_.reset();
}

Distributed::Pending Distributed::reduce_scatter(const at::Tensor& in, const at::Tensor& out) {
  Pending p;
  if (!active()) {
    out.copy_(in);
    return p;
  }
  R1_CHECK(in.numel() == out.numel() * world_size(), "reduce_scatter: {} elements do not split into {} x {}",
           in.numel(), world_size(), out.numel());
  at::Tensor i = in, o = out;
  p.work_ = std::make_shared<Work>(Work{impl_->pg->_reduce_scatter_base(o, i), this, "gradient reduce-scatter"});
  return p;
}

Distributed::Pending Distributed::all_gather(const at::Tensor& chunk, const at::Tensor& out) {
  Pending p;
  if (!active()) {
    out.copy_(chunk);
    return p;
  }
  R1_CHECK(out.numel() == chunk.numel() * world_size(), "all_gather: {} elements are not {} x {}", out.numel(),
           world_size(), chunk.numel());
  at::Tensor i = chunk, o = out;
  p.work_ = std::make_shared<Work>(Work{impl_->pg->_allgather_base(o, i), this, "weight all-gather"});
  return p;
}

std::string Distributed::dead_ranks() {
  if (!active()) return "";
  auto counts = [&] {
    std::vector<int64_t> c;
    for (int64_t r = 0; r < world_size(); ++r) c.push_back(impl_->store->add(beat_key(r), 0));
    return c;
  };
  std::vector<int64_t> dead;
  try {
    const std::vector<int64_t> before = counts();
    std::this_thread::sleep_for(kBeat * kBeatsToDeath);
    const std::vector<int64_t> after = counts();
    for (int64_t r = 0; r < world_size(); ++r)
      if (r != rank() && after[r] == before[r]) dead.push_back(r);
  } catch (const std::exception&) {
    return "rank 0 (it hosts the rendezvous store, which no longer answers)";
  }
  if (dead.empty()) return "";
  return fmt::format("{} {}", dead.size() == 1 ? "rank" : "ranks", fmt::join(dead, ", "));
}

void Distributed::done(const std::string& key, const std::string& error) {
  if (!active()) return;
  impl_->store->set("r1/done/" + key, std::vector<uint8_t>(error.begin(), error.end()));
}

std::string Distributed::wait_for(const std::string& key, int64_t worker) {
  if (!active()) return "";
  const std::string k = "r1/done/" + key;
  try {
    int64_t last = impl_->store->add(beat_key(worker), 0);
    auto last_change = std::chrono::steady_clock::now();
    while (!impl_->store->check({k})) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const int64_t now = impl_->store->add(beat_key(worker), 0);
      if (now != last) {
        last = now, last_change = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - last_change > kBeat * kBeatsToDeath) {
        fail("data parallel: rank {} died (its heartbeat stopped) while rank {} waited for its {}", worker, rank(),
             key);
      }
    }
    const std::vector<uint8_t> v = impl_->store->get(k);
    return std::string(v.begin(), v.end());
  } catch (const r1::Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("data parallel: rank 0 (it hosts the rendezvous store) is gone while rank {} waited for {}: {}", rank(), key,
         e.what());
  }
}

}  // namespace r1
