#include "rl/checkpoint.hpp"

#include <torch/optim/adamw.h>
#include <algorithm>
#include <boost/json.hpp>
#include <fstream>
#include <random>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/json.hpp"
#include "common/test_seam.hpp"
#include "policy/checkpoint.hpp"
#include "policy/lora.hpp"
#include "policy/safetensors.hpp"

namespace fs = std::filesystem;

namespace r1 {

namespace {

// FNV-1a of a file, read in 1 MiB pieces (checkpoint files run to gigabytes).
uint64_t file_checksum(const fs::path& f) {
  std::ifstream in(f, std::ios::binary);
  R1_CHECK(in.good(), "cannot read {}", f.string());
  std::vector<char> buf(size_t{1} << 20);
  uint64_t h = 0xcbf29ce484222325ULL;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    for (std::streamsize i = 0; i < in.gcount(); ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 0x100000001b3ULL;
  }
  return h;
}

std::string state_json(const TrainerState& s) {
  boost::json::object o{{"step", s.step},
                        {"version", s.version},
                        {"records_by_rank", boost::json::value_from(s.records_by_rank)},
                        {"shuffle_rng", s.shuffle_rng},
                        {"world_size", s.world_size},
                        {"guard", s.guard.to_json()}};
  return boost::json::serialize(o) + "\n";
}

TrainerState parse_state(const fs::path& f) {
  auto v = json::parse_file(f);
  json::Object o(v, f.string());
  TrainerState s{o.integer("step"), o.integer("version"), {}, o.string("shuffle_rng"), o.integer("world_size")};
  for (const auto& v : o.at("records_by_rank").as_array()) s.records_by_rank.push_back(v.as_int64());
  if (const auto* g = o.raw().if_contains("guard")) s.guard = GuardState::from_json(g->as_object());
  R1_CHECK(static_cast<int64_t>(s.records_by_rank.size()) == s.world_size,
           "{}: records_by_rank has {} entries for {} ranks", f.string(), s.records_by_rank.size(), s.world_size);
  return s;
}

// Optimizer files hold pieces of the trained tensors, keyed "<name>.<kind>" for a whole tensor (in
// its shape) or "<name>.<kind>@<begin>" for elements [begin, begin + n) of it flattened (1-D): kind
// exp_avg, exp_avg_sq, and under ZeRO with bf16-mixed master; plus "step", AdamW's step count. Any
// world size and ZeRO stage can read any other's pieces back.
std::string piece_key(const std::string& name, const char* kind, const ZeroShards::Piece& p, const at::Tensor& whole) {
  if (p.begin == 0 && p.numel == whole.numel()) return fmt::format("{}.{}", name, kind);
  return fmt::format("{}.{}@{}", name, kind, p.begin);
}

// This rank's optimizer state, as pieces.
NamedTensors optimizer_pieces(const TrainWeights& w, torch::optim::AdamW& opt) {
  NamedTensors out;
  int64_t step = -1;
  for (const auto& p : w.pieces()) {
    const at::Tensor& holder = w.params()[p.chunk];
    const at::Tensor& whole = w.trained()[p.param];
    auto piece_of = [&](const at::Tensor& t) {
      at::Tensor v = t.detach().reshape({-1}).narrow(0, p.at, p.numel);
      return p.numel == whole.numel() ? v.view(whole.sizes()) : v;
    };
    const std::string& name = w.names()[p.param];
    if (w.zero_stage() > 0 && w.mixed()) out.emplace_back(piece_key(name, "master", p, whole), piece_of(holder));
    auto it = opt.state().find(holder.unsafeGetTensorImpl());
    if (it == opt.state().end()) continue;  // never stepped: no moments yet
    auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
    out.emplace_back(piece_key(name, "exp_avg", p, whole), piece_of(st.exp_avg()));
    out.emplace_back(piece_key(name, "exp_avg_sq", p, whole), piece_of(st.exp_avg_sq()));
    step = std::max(step, st.step());
  }
  if (step >= 0) out.emplace_back("step", at::tensor({step}, at::kLong));
  return out;
}

// The values the Hugging Face copy is written from in bf16-mixed when it is float32 (the masters,
// gathered under ZeRO); none: the policy's own.
std::optional<std::vector<at::Tensor>> masters_to_write(TrainWeights& w, CausalLM& policy,
                                                        const std::optional<Dtype>& dtype) {
  if (!w.mixed()) return std::nullopt;
  const at::ScalarType hf = dtype ? scalar_type(*dtype) : policy->options().dtype().toScalarType();
  if (hf != at::kFloat && w.zero_stage() > 0) return std::nullopt;  // the compute copy is the masters rounded
  return w.full_masters();
}

// Rank 0's part: the Hugging Face folder, the reference, the state and the manifest, then the
// atomic rename and rotation.
void write_rank0_files(const fs::path& tmp, CausalLM& policy, TrainWeights& w, const CausalLM* ref,
                       const TrainerState& state, const CheckpointSave& o,
                       const std::optional<std::vector<at::Tensor>>& masters) {
  write_pretrained(
      policy, tmp,
      {.dtype = o.dtype, .copy_tokenizer_from = o.tokenizer_from, .values = masters ? &*masters : nullptr});
  test_seam::crash_point(test_seam::Point::in_save, state.step);
  // Stage 0 bf16-mixed: the float32 weights bit for bit when the Hugging Face copy is of another dtype
  // (under ZeRO they are master pieces of the optimizer files).
  const at::ScalarType hf_type = o.dtype ? scalar_type(*o.dtype) : policy->options().dtype().toScalarType();
  if (w.mixed() && w.zero_stage() == 0 && hf_type != at::kFloat)
    write_pretrained(policy, tmp / "masters", {.dtype = Dtype::float32, .values = &w.params()});
  if (ref) write_pretrained(*const_cast<CausalLM*>(ref), tmp / "reference");
  write_file_atomic(tmp / "trainer_state.json", state_json(state));
  boost::json::object files;
  for (const auto& e : fs::recursive_directory_iterator(tmp))
    if (e.is_regular_file()) {
      std::string rel = fs::relative(e.path(), tmp).string();
      files[rel] = boost::json::object{{"bytes", static_cast<int64_t>(fs::file_size(e.path()))},
                                       {"fnv1a", fmt::format("{:016x}", file_checksum(e.path()))}};
    }
  write_file_atomic(tmp / "MANIFEST.json", boost::json::serialize(boost::json::object{{"files", files}}) + "\n");
}

void rotate(const fs::path& root, int64_t keep) {
  std::vector<fs::path> all;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0) all.push_back(e.path());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove_all(all[i]);
}

}  // namespace

void save_final_model(const fs::path& dir, CausalLM& policy, TrainWeights& w, const CheckpointSave& o,
                      Distributed& dist) {
  const std::optional<std::vector<at::Tensor>> masters = masters_to_write(w, policy, o.dtype);  // collective
  const std::string key = "final-model";
  if (dist.rank() != 0) {
    const std::string error = dist.wait_for(key, 0);
    if (!error.empty()) fail("{}", error);
    dist.barrier();  // rank 0 hosts the store: it stays until every rank has seen the key
    return;
  }
  try {
    R1_CHECK(w.finite(), "not saving the final model: its weights hold NaN or inf");
    save_pretrained(
        policy, dir,
        {.dtype = o.dtype, .copy_tokenizer_from = o.tokenizer_from, .values = masters ? &*masters : nullptr});
  } catch (const std::exception& e) {
    dist.done(key, fmt::format("rank 0 failed to save the final model: {}", e.what()));
    throw;
  }
  dist.done(key);
  dist.barrier();
}

fs::path save_checkpoint(const fs::path& run_dir, CausalLM& policy, TrainWeights& w, torch::optim::AdamW& opt,
                         const CausalLM* ref, const TrainerState& state, const CheckpointSave& o, Distributed& dist) {
  R1_CHECK(w.finite(),  // the compute weights are the same on every rank: every rank stops alike
           "not saving the checkpoint of step {}: the weights hold NaN or inf (the last good "
           "checkpoint is kept)",
           state.step);
  const fs::path root = run_dir / "checkpoints";
  const std::string name = fmt::format("step-{:06d}", state.step);
  const fs::path tmp = root / fmt::format(".{}.tmp", name), dst = root / name;
  if (dist.rank() == 0) {
    fs::remove_all(tmp);
    fs::create_directories(tmp / "optimizer");
  }
  dist.barrier();
  // Every rank its pieces of the optimizer state (at stage 0 rank 0 holds them all).
  const std::optional<std::vector<at::Tensor>> masters = masters_to_write(w, policy, o.dtype);  // collective
  if (w.zero_stage() > 0 || dist.rank() == 0)
    save_safetensors(tmp / "optimizer", optimizer_pieces(w, opt),
                     {.file_stem = fmt::format("rank-{:05d}-of-{:05d}", dist.rank(), dist.world_size())});
  dist.barrier();
  const std::string key = "checkpoint/" + name;
  if (dist.rank() != 0) {  // rank 0 alone writes the rest; waited for outside the collective timeout
    const std::string error = dist.wait_for(key, 0);
    if (!error.empty()) fail("{}", error);
    dist.barrier();  // rank 0 hosts the store: it stays until every rank has seen the key
    return dst;
  }
  try {
    write_rank0_files(tmp, policy, w, ref, state, o, masters);
    replace_dir_atomic(tmp, dst);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    dist.done(key, fmt::format("rank 0 failed to write checkpoint {}: {}", name, e.what()));
    throw;
  }
  dist.done(key);
  dist.barrier();
  rotate(root, o.keep);  // keep the newest `keep` good checkpoints
  return dst;
}

// The step count in a checkpoint folder's name (step-NNNNNN); -1 for another name.
static int64_t step_of_name(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() == 5) return -1;
  if (!std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  return std::stoll(name.substr(5));
}

int64_t remove_checkpoints_after(const fs::path& run_dir, int64_t step) {
  const fs::path root = run_dir / "checkpoints";
  if (!fs::exists(root)) return 0;
  std::vector<fs::path> later;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && step_of_name(e.path().filename().string()) > step) later.push_back(e.path());
  for (const auto& d : later) fs::remove_all(d);
  return static_cast<int64_t>(later.size());
}

std::optional<FoundCheckpoint> find_checkpoint(const fs::path& run_dir, std::vector<std::string>* skipped,
                                               std::optional<int64_t> at_most) {
  const fs::path root = run_dir / "checkpoints";
  if (!fs::exists(root)) return std::nullopt;
  std::vector<fs::path> all, interrupted;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (n.rfind('.', 0) == 0)
      interrupted.push_back(e.path());  // every temp name starts with '.'
    else if (e.is_directory() && n.rfind("step-", 0) == 0 && (!at_most || step_of_name(n) <= *at_most))
      all.push_back(e.path());
  }
  for (const auto& t : interrupted) {
    fs::remove_all(t);
    if (skipped)
      skipped->push_back(fmt::format("{}: a save that was interrupted (its temp folder is removed)", t.string()));
  }
  std::sort(all.rbegin(), all.rend());
  for (const auto& dir : all) {
    try {
      R1_CHECK(fs::exists(dir / "MANIFEST.json"), "no MANIFEST.json (the save did not finish)");
      auto v = json::parse_file(dir / "MANIFEST.json");
      json::Object files = json::Object(v, (dir / "MANIFEST.json").string()).object("files");
      for (const auto& kv : files.raw()) {
        fs::path f = dir / std::string(kv.key());
        json::Object e(kv.value(), f.string());
        R1_CHECK(fs::exists(f), "{} is missing", f.string());
        R1_CHECK(static_cast<int64_t>(fs::file_size(f)) == e.integer("bytes"), "{} has {} bytes, the manifest says {}",
                 f.string(), fs::file_size(f), e.integer("bytes"));
        R1_CHECK(fmt::format("{:016x}", file_checksum(f)) == e.string("fnv1a"), "{} fails its checksum", f.string());
      }
      return FoundCheckpoint{dir, parse_state(dir / "trainer_state.json")};
    } catch (const std::exception& e) {
      if (skipped) skipped->push_back(fmt::format("{}: {}", dir.string(), e.what()));
    }
  }
  return std::nullopt;
}

namespace {

// The pieces of every optimizer file of a checkpoint (optimizer_pieces), indexed for reading
// ranges back at any layout.
class StatePieces {
 public:
  explicit StatePieces(const fs::path& dir) {
    std::vector<fs::path> paths;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") paths.push_back(e.path());
    std::sort(paths.begin(), paths.end());
    for (const auto& f : paths) files_.emplace_back(f);
    for (size_t f = 0; f < files_.size(); ++f)
      for (const auto& [key, entry] : files_[f].entries()) {
        if (key == "step") {
          step_ = std::max(step_, files_[f].get(key).item<int64_t>());
          continue;
        }
        const size_t at = key.rfind('@');
        const std::string base = key.substr(0, at);  // "<name>.<kind>"
        const int64_t begin = at == std::string::npos ? 0 : std::stoll(key.substr(at + 1));
        index_[base].push_back({begin, f, key});
      }
  }
  int64_t step() const { return step_; }  // -1: the optimizer never stepped
  bool has(const std::string& name, const char* kind) const { return index_.count(fmt::format("{}.{}", name, kind)); }
  // Elements [begin, begin + dst.numel()) of tensor `name`'s `kind`, flattened, into `dst` (1-D).
  void read(const std::string& name, const char* kind, int64_t begin, at::Tensor dst) const {
    const std::string base = fmt::format("{}.{}", name, kind);
    auto it = index_.find(base);
    R1_CHECK(it != index_.end(), "checkpoint optimizer state has no {}", base);
    const int64_t end = begin + dst.numel();
    int64_t covered = 0;
    for (const auto& piece : it->second) {
      at::Tensor t = files_[piece.file].get(piece.key).reshape({-1});
      const int64_t lo = std::max(begin, piece.begin), hi = std::min(end, piece.begin + t.numel());
      if (lo >= hi) continue;
      dst.narrow(0, lo - begin, hi - lo).copy_(t.narrow(0, lo - piece.begin, hi - lo));
      covered += hi - lo;
    }
    R1_CHECK(covered == dst.numel(), "checkpoint optimizer state: the pieces of {} cover {} of elements [{}, {})", base,
             covered, begin, end);
  }

 private:
  struct Piece {
    int64_t begin;
    size_t file;
    std::string key;
  };
  std::vector<SafetensorsReader> files_;
  std::map<std::string, std::vector<Piece>> index_;
  int64_t step_ = -1;
};

// Every trained tensor's float32 value, whole, from a checkpoint without master pieces: masters/
// when the Hugging Face copy is of another dtype, else that copy (a full fine-tune) or the adapters.
std::vector<at::Tensor> whole_masters(const fs::path& dir, CausalLM& policy, const TrainWeights& w) {
  std::map<std::string, at::Tensor> by_name;
  if (has_lora(policy)) {
    for (auto& [n, t] : read_adapter_weights(policy, fs::exists(dir / "masters") ? dir / "masters" : dir))
      by_name[n] = t;
  } else if (fs::exists(dir / "masters")) {
    SafetensorsReader m(dir / "masters");
    for (const auto& n : w.names()) by_name[n] = m.get(n).clone();
  } else {
    CausalLM exact = load_pretrained(dir, policy->options().dtype(at::kFloat));
    for (auto& p : exact->named_parameters()) by_name[p.key()] = p.value().detach();
  }
  std::vector<at::Tensor> out;
  for (const auto& n : w.names()) {
    auto it = by_name.find(n);
    R1_CHECK(it != by_name.end(), "{}: no float32 value of {}", dir.string(), n);
    out.push_back(it->second);
  }
  return out;
}

// What AdamW updates, piece by piece, from master pieces, whole masters, or (fp32) the policy's
// weights just loaded.
void load_masters(const fs::path& dir, CausalLM& policy, TrainWeights& w, const StatePieces& state) {
  if (!w.mixed() && w.zero_stage() == 0) return;  // AdamW steps the policy's own tensors
  const bool pieces = w.mixed() && !w.names().empty() && state.has(w.names()[0], "master");
  std::vector<at::Tensor> whole;
  if (!w.mixed())
    whole = w.trained();
  else if (!pieces)
    whole = whole_masters(dir, policy, w);
  for (const auto& p : w.pieces()) {
    at::Tensor dst = w.params()[p.chunk].detach().reshape({-1}).narrow(0, p.at, p.numel);
    if (pieces)
      state.read(w.names()[p.param], "master", p.begin, dst);
    else
      dst.copy_(whole[p.param].reshape({-1}).narrow(0, p.begin, p.numel));
  }
}

// AdamW's moments of every tensor it updates, assembled from the pieces at this rank's layout.
void load_moments(TrainWeights& w, torch::optim::AdamW& opt, const StatePieces& state) {
  if (state.step() < 0) return;  // saved before the first optimizer step
  std::map<size_t, std::unique_ptr<torch::optim::AdamWParamState>> fresh;
  for (const auto& p : w.pieces()) {
    const std::string& name = w.names()[p.param];
    if (!state.has(name, "exp_avg")) continue;  // never had a gradient; under ZeRO its chunk's zeros stay
    const at::Tensor& holder = w.params()[p.chunk];
    auto& st = fresh[p.chunk];
    if (!st) {
      st = std::make_unique<torch::optim::AdamWParamState>();
      st->exp_avg(at::zeros_like(holder, at::MemoryFormat::Contiguous));
      st->exp_avg_sq(at::zeros_like(holder, at::MemoryFormat::Contiguous));
      st->step(state.step());
    }
    state.read(name, "exp_avg", p.begin, st->exp_avg().reshape({-1}).narrow(0, p.at, p.numel));
    state.read(name, "exp_avg_sq", p.begin, st->exp_avg_sq().reshape({-1}).narrow(0, p.at, p.numel));
  }
  for (auto& [k, st] : fresh) opt.state()[w.params()[k].unsafeGetTensorImpl()] = std::move(st);
}

}  // namespace

void load_checkpoint(const fs::path& dir, CausalLM& policy, TrainWeights& w, torch::optim::AdamW& opt, CausalLM* ref) {
  at::NoGradGuard ng;
  if (has_lora(policy)) {
    load_adapter_weights(policy, dir);  // the base is the run's model, unchanged
  } else {
    CausalLM saved = load_pretrained(dir, policy->options());
    auto from = saved->named_parameters();
    for (auto& p : policy->named_parameters()) p.value().copy_(from[p.key()]);
  }
  const StatePieces state(dir / "optimizer");
  load_masters(dir, policy, w, state);
  w.refresh_policy();  // under ZeRO a collective: every rank loads
  load_moments(w, opt, state);
  if (ref) {
    R1_CHECK(fs::exists(dir / "reference"), "{}: the run keeps a reference model but the checkpoint has none",
             dir.string());
    CausalLM saved_ref = load_pretrained(dir / "reference", (*ref)->options());
    auto rf = saved_ref->named_parameters();
    for (auto& p : (*ref)->named_parameters()) p.value().copy_(rf[p.key()]);
  }
}

}  // namespace r1
