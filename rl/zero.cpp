#include "rl/zero.hpp"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>

#include "common/error.hpp"

namespace r1 {

namespace {

// The decoder layer a trained tensor belongs to; -1 for the rest (embeddings, final norm, lm_head).
int64_t layer_of(const std::string& name) {
  const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return -1;
  return std::stoll(name.substr(prefix.size()));
}

struct ReadyHook : torch::autograd::PostAccumulateGradHook {
  explicit ReadyHook(std::function<void(const at::Tensor&)> f) : fn(std::move(f)) {}
  void operator()(const torch::autograd::Variable& tensor) override { fn(tensor); }
  std::function<void(const at::Tensor&)> fn;
};

}  // namespace

struct ZeroShards::Unit {
  int64_t layer = -1;           // the decoder layer; -1: the rest
  std::vector<size_t> params;   // indices into trained_
  std::vector<int64_t> offset;  // where each starts in the unit's flat vector
  int64_t padded = 0, chunk = 0;
  size_t index = 0;      // its chunk in chunks_
  int64_t ready = 0;     // gradients final in this backward
  at::Tensor acc;        // [padded] float32: stage 1's accumulator of bfloat16 gradients
  at::Tensor flat, out;  // in flight: [padded] gradients, [chunk] this rank's share of their sum
  Distributed::Pending pending;
  // Stage 3: the compute weights' flat buffer [padded] (the trained tensors are views of it), and
  // whether its storage holds them, is being gathered into, or is freed.
  at::Tensor compute;
  enum class Held { whole, in_flight, released } held = Held::whole;
  at::Tensor gather_src;
  Distributed::Pending gathering;
};

// Units whose reduce-scatter may be in flight at once: each holds its float32 gradients [padded]
// and their share [chunk] until it lands, so the bound caps what the sums add to a backward's peak.
constexpr size_t kUnitsInFlight = 2;

// What the hooks touch; they run on autograd's threads.
struct ZeroShards::State {
  std::mutex mu;
  bool armed = false;
  bool in_backward = false;  // between before_backward and after_backward
  size_t next_launch = 0;    // units launch strictly in order, so every rank issues the same sequence
  std::unordered_map<const void*, size_t> unit_of;  // TensorImpl* -> unit
  std::deque<size_t> in_flight;                     // launched, not landed: the oldest first
};

ZeroShards::ZeroShards(int64_t stage, const std::vector<std::string>& names, const std::vector<at::Tensor>& trained,
                       const std::vector<at::Tensor>& initial, Distributed& dist)
    : stage_(stage), dist_(dist), trained_(trained), s_(std::make_unique<State>()) {
  R1_CHECK(stage >= 1 && stage <= 3, "ZeRO stage {} is not 1, 2 or 3", stage);
  R1_CHECK(names.size() == trained.size() && initial.size() == trained.size(), "ZeRO: {} names for {} tensors",
           names.size(), trained.size());
  std::map<int64_t, size_t, std::greater<>> by_layer;  // the last layer first: backward's order; the rest last
  for (size_t i = 0; i < trained.size(); ++i) {
    auto [it, fresh] = by_layer.try_emplace(layer_of(names[i]), units_.size());
    if (fresh) units_.emplace_back();
    Unit& u = units_[it->second];
    u.layer = it->first;
    u.params.push_back(i);
    u.offset.push_back(u.padded);
    u.padded += trained[i].numel();
  }
  std::vector<Unit> ordered;
  for (auto& [layer, idx] : by_layer) ordered.push_back(std::move(units_[idx]));
  units_ = std::move(ordered);
  const int64_t W = dist.world_size(), r = dist.rank();
  at::NoGradGuard ng;
  for (size_t k = 0; k < units_.size(); ++k) {
    Unit& u = units_[k];
    u.chunk = (u.padded + W - 1) / W;
    u.padded = u.chunk * W;
    u.index = k;
    const auto opts = trained[u.params[0]].options().dtype(at::kFloat);
    at::Tensor c = at::zeros({u.chunk}, opts);
    const int64_t lo = r * u.chunk, hi = lo + u.chunk;  // this rank's elements of the flat vector
    for (size_t j = 0; j < u.params.size(); ++j) {
      const size_t i = u.params[j];
      const int64_t a = std::max(lo, u.offset[j]), b = std::min(hi, u.offset[j] + trained[i].numel());
      if (a >= b) continue;
      c.narrow(0, a - lo, b - a).copy_(initial[i].reshape({-1}).narrow(0, a - u.offset[j], b - a));
      pieces_.push_back({i, a - u.offset[j], b - a, k, a - lo});
    }
    c.set_requires_grad(true);  // never in the autograd graph: gradients arrive by reduce-scatter
    chunks_.push_back(c);
    if (stage == 3) {  // the trained tensors become views of one flat buffer per unit
      u.compute = at::zeros({u.padded}, trained[u.params[0]].options());
      for (size_t j = 0; j < u.params.size(); ++j) {
        at::Tensor p = trained[u.params[j]];
        at::Tensor view = u.compute.narrow(0, u.offset[j], p.numel()).view(p.sizes());
        view.copy_(p.detach());
        p.set_data(view);
      }
    }
    for (size_t i : u.params) s_->unit_of[trained[i].unsafeGetTensorImpl()] = k;
  }
}

ZeroShards::~ZeroShards() {
  for (auto& p : trained_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);  // they point here
}

void ZeroShards::attach_hooks() {
  for (auto& p : trained_)
    torch::autograd::impl::set_post_acc_grad_hooks(
        p, std::make_unique<ReadyHook>([this](const at::Tensor& t) { on_grad_ready(t); }));
}

void ZeroShards::before_backward(bool last) {
  std::lock_guard<std::mutex> lock(s_->mu);
  s_->armed = stage_ >= 2 || last;
  s_->in_backward = true;
  s_->next_launch = 0;
  for (auto& u : units_) u.ready = 0;
}

void ZeroShards::on_grad_ready(const at::Tensor& p) {
  std::lock_guard<std::mutex> lock(s_->mu);
  if (!s_->armed) return;
  auto it = s_->unit_of.find(p.unsafeGetTensorImpl());
  if (it == s_->unit_of.end()) return;
  ++units_[it->second].ready;
  launch_ready_in_order(true);
}

void ZeroShards::launch_ready_in_order(bool early) {
  while (s_->next_launch < units_.size() &&
         units_[s_->next_launch].ready == static_cast<int64_t>(units_[s_->next_launch].params.size())) {
    launch(units_[s_->next_launch++]);
    early_ += early;
    ++launched_;
  }
}

// The unit's gradients into one float32 vector (zeros where a tensor got none, and in the padding),
// the compute gradients released, and its reduce-scatter started once fewer than kUnitsInFlight are.
void ZeroShards::launch(Unit& u) {
  at::NoGradGuard ng;
  if (s_->in_flight.size() >= kUnitsInFlight) {
    land(units_[s_->in_flight.front()]);
    s_->in_flight.pop_front();
  }
  at::Tensor flat = u.acc.defined() ? u.acc : at::zeros({u.padded}, chunks_[u.index].options());
  for (size_t j = 0; j < u.params.size(); ++j) {
    at::Tensor& g = trained_[u.params[j]].mutable_grad();
    if (!g.defined()) continue;
    at::Tensor seg = flat.narrow(0, u.offset[j], g.numel());
    if (u.acc.defined())
      seg.add_(g.reshape({-1}));
    else
      seg.copy_(g.reshape({-1}));  // bfloat16 becomes float32 here
    g.reset();
  }
  u.acc = at::Tensor();
  if (updating_) release(u);  // stage 3: its backward is done
  u.flat = flat;
  u.out = at::empty({u.chunk}, flat.options());
  u.pending = dist_.reduce_scatter(u.flat, u.out);
  s_->in_flight.push_back(u.index);
}

void ZeroShards::land(Unit& u) {
  u.pending.wait();
  at::Tensor& g = chunks_[u.index].mutable_grad();
  if (g.defined())
    g.add_(u.out);
  else
    g = u.out;
  u.flat = at::Tensor(), u.out = at::Tensor();
}

void ZeroShards::after_backward() {
  std::lock_guard<std::mutex> lock(s_->mu);
  at::NoGradGuard ng;
  s_->in_backward = false;
  if (!s_->armed) {  // stage 1 before the last backward: bfloat16 gradients into float32 accumulators
    for (auto& u : units_)
      for (size_t j = 0; j < u.params.size(); ++j) {
        at::Tensor& g = trained_[u.params[j]].mutable_grad();
        if (!g.defined() || g.scalar_type() == at::kFloat) continue;  // float32 accumulates in place
        if (!u.acc.defined()) u.acc = at::zeros({u.padded}, chunks_[u.index].options());
        u.acc.narrow(0, u.offset[j], g.numel()).add_(g.reshape({-1}));
        g.reset();
      }
    return;
  }
  s_->armed = false;
  for (auto& u : units_) u.ready = static_cast<int64_t>(u.params.size());  // what backward did not launch
  launch_ready_in_order(false);
  for (size_t k : s_->in_flight) land(units_[k]);
  s_->in_flight.clear();
}

double ZeroShards::grad_sq_norm() {
  at::NoGradGuard ng;
  at::Tensor sq;
  for (const auto& c : chunks_)
    if (c.grad().defined()) sq = sq.defined() ? sq + c.grad().pow(2).sum() : c.grad().pow(2).sum();
  const double local = sq.defined() ? sq.item<double>() : 0.0;
  return dist_.sum({local})[0];
}

void ZeroShards::scale_grads(double factor) {
  at::NoGradGuard ng;
  for (auto& c : chunks_)
    if (c.grad().defined()) c.mutable_grad().mul_(factor);
}

void ZeroShards::gather_weights() {
  at::NoGradGuard ng;
  if (stage_ == 3) {
    std::lock_guard<std::mutex> lock(s_->mu);
    for (auto& u : units_)
      if (updating_ && u.layer >= 0) {
        release(u);  // stale: gathered from the new chunks when next used
      } else {
        start_gather(u);  // whole: the new values into its storage
      }
    for (auto& u : units_)
      if (!updating_ || u.layer < 0) materialize(u);
    return;
  }
  struct InFlight {
    size_t unit;
    at::Tensor src, out;
    Distributed::Pending pending;
  };
  std::deque<InFlight> flight;  // two units in flight: one lands while the next travels
  auto land_front = [&] {
    InFlight& f = flight.front();
    f.pending.wait();
    const Unit& u = units_[f.unit];
    for (size_t j = 0; j < u.params.size(); ++j) {
      at::Tensor p = trained_[u.params[j]].detach();
      p.copy_(f.out.narrow(0, u.offset[j], p.numel()).view(p.sizes()));
    }
    flight.pop_front();
  };
  for (size_t k = 0; k < units_.size(); ++k) {
    const at::ScalarType dtype = trained_[units_[k].params[0]].scalar_type();
    InFlight f{k, chunks_[k].detach().to(dtype), at::empty({units_[k].padded}, chunks_[k].options().dtype(dtype)), {}};
    f.pending = dist_.all_gather(f.src, f.out);
    flight.push_back(std::move(f));
    if (flight.size() > 1) land_front();
  }
  while (!flight.empty()) land_front();
}

std::vector<at::Tensor> ZeroShards::gather_full() {
  at::NoGradGuard ng;
  std::vector<at::Tensor> out(trained_.size());
  for (size_t k = 0; k < units_.size(); ++k) {
    const Unit& u = units_[k];
    at::Tensor flat = at::empty({u.padded}, chunks_[k].options());
    dist_.all_gather(chunks_[k].detach(), flat).wait();
    for (size_t j = 0; j < u.params.size(); ++j) {
      const at::Tensor& p = trained_[u.params[j]];
      out[u.params[j]] = flat.narrow(0, u.offset[j], p.numel()).view(p.sizes());
    }
  }
  return out;
}

// Stage 3's compute buffers. Freeing resets the storage's allocation (autograd keeps the views);
// gathering allocates it again and all-gathers into it through a tensor of its own, so the views'
// version counters are untouched and saved tensors stay valid.
namespace {

void free_storage(const at::Tensor& t) {
  c10::StorageImpl* st = t.storage().unsafeGetStorageImpl();
  st->set_data_ptr_noswap(at::DataPtr(nullptr, st->device()));
  st->set_nbytes(0);
}

void alloc_storage(const at::Tensor& t) {
  c10::StorageImpl* st = t.storage().unsafeGetStorageImpl();
  const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  st->set_data_ptr_noswap(st->allocator()->allocate(bytes));
  st->set_nbytes(bytes);
}

}  // namespace

void ZeroShards::start_gather(Unit& u) {
  if (u.held == Unit::Held::in_flight) return;
  if (u.held == Unit::Held::released) alloc_storage(u.compute);
  u.gather_src = chunks_[u.index].detach().to(u.compute.scalar_type());
  at::Tensor out = at::from_blob(u.compute.storage().mutable_data(), {u.padded}, u.compute.options());
  u.gathering = dist_.all_gather(u.gather_src, out);
  u.held = Unit::Held::in_flight;
}

void ZeroShards::materialize(Unit& u) {
  if (u.held == Unit::Held::whole) return;
  start_gather(u);
  u.gathering.wait();
  u.gather_src = at::Tensor();
  u.held = Unit::Held::whole;
}

void ZeroShards::release(Unit& u) {
  if (u.layer < 0 || u.held == Unit::Held::released) return;  // the embeddings and the rest stay whole
  if (u.held == Unit::Held::in_flight) u.gathering.wait(), u.gather_src = at::Tensor();
  free_storage(u.compute);
  u.held = Unit::Held::released;
}

ZeroShards::Unit* ZeroShards::unit_of_layer(int64_t layer) {
  for (auto& u : units_)
    if (u.layer == layer) return &u;
  return nullptr;
}

void ZeroShards::prefetch(int64_t layer) {
  if (Unit* u = unit_of_layer(layer); u && u->held == Unit::Held::released) start_gather(*u);
}

void ZeroShards::begin_update() {
  if (stage_ != 3) return;
  std::lock_guard<std::mutex> lock(s_->mu);
  updating_ = true;
  for (auto& u : units_) release(u);
}

void ZeroShards::end_update() {
  if (stage_ != 3) return;
  std::lock_guard<std::mutex> lock(s_->mu);
  updating_ = false;
  for (auto& u : units_) start_gather(u);  // released layers, the rest already current: all in flight at once
  for (auto& u : units_) materialize(u);
}

// Forward: gather this layer, prefetch the next; in backward (a recompute) the next is the one before.
void ZeroShards::before(int64_t layer) {
  std::lock_guard<std::mutex> lock(s_->mu);
  Unit* u = updating_ ? unit_of_layer(layer) : nullptr;
  if (!u) return;
  materialize(*u);
  prefetch(s_->in_backward ? layer - 1 : layer + 1);
}

// After the forward the weights go; the gradient reaching the layer's outputs brings them back for
// its backward (a recompute keeps them: its backward follows at once).
void ZeroShards::after(int64_t layer, const std::vector<at::Tensor>& outputs) {
  std::lock_guard<std::mutex> lock(s_->mu);
  Unit* u = updating_ ? unit_of_layer(layer) : nullptr;
  if (!u) return;
  for (const auto& o : outputs)
    if (o.requires_grad())
      o.register_hook([this, layer](const at::Tensor&) {
        std::lock_guard<std::mutex> l(s_->mu);
        if (Unit* v = updating_ ? unit_of_layer(layer) : nullptr) {
          materialize(*v);
          prefetch(layer - 1);
        }
      });
  if (!s_->in_backward) release(*u);
}

double ZeroShards::compute_bytes() const {
  double b = 0;
  for (const auto& u : units_)
    if (u.compute.defined()) b += static_cast<double>(u.compute.storage().nbytes());
  return b;
}

double ZeroShards::grad_bytes() const {
  double b = 0;
  for (const auto& c : chunks_)
    if (c.grad().defined()) b += static_cast<double>(c.grad().nbytes());
  for (const auto& u : units_)
    if (u.acc.defined()) b += static_cast<double>(u.acc.nbytes());
  return b;
}

}  // namespace r1
