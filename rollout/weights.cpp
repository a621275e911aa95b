#include "rollout/weights.hpp"

#include <ATen/Parallel.h>
#include <fmt/ranges.h>

#include <cstring>

#include "common/error.hpp"

namespace r1 {

namespace {

// FNV-1a over 8-byte words (bytes for the tail), mixed per tensor: fast and order-sensitive.
struct Hasher {
  uint64_t h = 0xcbf29ce484222325ULL;
  void bytes(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      h = (h ^ w) * 0x100000001b3ULL;
      h ^= h >> 29;
    }
    for (; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  }
  void str(const std::string& s) { bytes(s.data(), s.size()); }
};

// One tensor's hash: name, dtype, shape and bytes. CPU tensors are read in place; a device tensor
// is copied to the host alone, never the whole model at once.
uint64_t tensor_hash(const std::string& name, const at::Tensor& t) {
  Hasher hs;
  hs.str(name);
  hs.str(std::string(c10::toString(t.scalar_type())));
  for (auto d : t.sizes()) hs.bytes(&d, sizeof d);
  at::Tensor c = t.detach();
  if (!c.device().is_cpu()) c = c.to(at::kCPU);
  c = c.contiguous();  // parameters are contiguous: no copy
  hs.bytes(c.data_ptr(), c.numel() * c.element_size());
  return hs.h;
}

// The tensors' hashes (in parallel on CPU), combined in order.
uint64_t checksum_of(const std::vector<std::pair<std::string, at::Tensor>>& named) {
  std::vector<uint64_t> h(named.size());
  bool cpu = true;
  for (const auto& [name, t] : named) cpu = cpu && t.device().is_cpu();
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) h[i] = tensor_hash(named[i].first, named[i].second);
  };
  if (cpu)
    at::parallel_for(0, static_cast<int64_t>(named.size()), 1, run);
  else
    run(0, static_cast<int64_t>(named.size()));
  Hasher all;
  for (uint64_t x : h) all.bytes(&x, sizeof x);
  return all.h;
}

// The parameters in name order; trained_only: those that require grad (what training changes).
std::vector<std::pair<std::string, at::Tensor>> sorted_params(torch::nn::Module& m, bool trained_only = false) {
  std::vector<std::pair<std::string, at::Tensor>> v;
  for (auto& p : m.named_parameters())
    if (!trained_only || p.value().requires_grad()) v.emplace_back(p.key(), p.value());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return v;
}

}  // namespace

uint64_t weights_checksum(torch::nn::Module& model) { return checksum_of(sorted_params(model)); }

uint64_t copy_weights(torch::nn::Module& dst, torch::nn::Module& src) {
  at::NoGradGuard ng;
  const auto from = sorted_params(src, /*trained_only=*/true), to = sorted_params(dst, /*trained_only=*/true);
  R1_CHECK(from.size() == to.size(), "copy_weights: the source trains {} parameters, the destination {}", from.size(),
           to.size());
  for (size_t i = 0; i < from.size(); ++i) {
    R1_CHECK(from[i].first == to[i].first && from[i].second.sizes() == to[i].second.sizes(),
             "copy_weights: '{}' {} against '{}' {}", from[i].first, from[i].second.sizes(), to[i].first,
             to[i].second.sizes());
    to[i].second.detach().copy_(from[i].second);
  }
  const uint64_t want = checksum_of(from), got = checksum_of(to);
  R1_CHECK(got == want, "copy_weights: checksum of the copy {:016x} != the source's {:016x}", got, want);
  return want;
}

uint64_t WeightStore::publish(torch::nn::Module& trainer_model, int64_t version, bool copy) {
  auto snap = std::make_shared<WeightSnapshot>();
  snap->version = version;
  at::NoGradGuard ng;
  if (copy) {
    for (auto& [name, t] : sorted_params(trainer_model, /*trained_only=*/true))
      snap->tensors.emplace_back(name, t.detach().to(at::kCPU, /*non_blocking=*/false, /*copy=*/true));
    snap->checksum = checksum_of(snap->tensors);
  }
  std::lock_guard<std::mutex> lock(mu_);
  R1_CHECK(snaps_.empty() || version > snaps_.rbegin()->first, "weight sync: version {} is not newer than {}", version,
           snaps_.rbegin()->first);
  snaps_[version] = snap;
  while (static_cast<int64_t>(snaps_.size()) > keep_) snaps_.erase(snaps_.begin());
  return snap->checksum;
}

std::shared_ptr<const WeightSnapshot> WeightStore::latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snaps_.empty() ? nullptr : snaps_.rbegin()->second;
}

std::shared_ptr<const WeightSnapshot> WeightStore::get(int64_t version) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = snaps_.find(version);
  R1_CHECK(it != snaps_.end(), "weight sync: version {} is no longer kept (keep more snapshots)", version);
  return it->second;
}

int64_t WeightStore::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snaps_.empty() ? -1 : snaps_.rbegin()->first;
}

bool install_weights(torch::nn::Module& model, const WeightSnapshot& snap, int64_t* installed_version) {
  if (*installed_version >= snap.version) return false;
  at::NoGradGuard ng;
  const auto params = sorted_params(model, /*trained_only=*/true);
  R1_CHECK(params.size() == snap.tensors.size(),
           "weight sync v{}: the worker model trains {} parameters, the trainer {}", snap.version, params.size(),
           snap.tensors.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, t] = snap.tensors[i];
    R1_CHECK(params[i].first == name, "weight sync v{}: trainer parameter '{}' is not in the worker model",
             snap.version, name);
    R1_CHECK(params[i].second.sizes() == t.sizes(), "weight sync v{}: '{}' has a different shape on the worker",
             snap.version, name);
    params[i].second.detach().copy_(t);
  }
  uint64_t got = checksum_of(params);
  if (got != snap.checksum)
    fail(
        "weight sync v{}: checksum of the worker's weights {:016x} != trainer's {:016x}: the worker would sample "
        "from weights the trainer never had",
        snap.version, got, snap.checksum);
  *installed_version = snap.version;
  return true;
}

}  // namespace r1
