#include "rl/checkpoint.hpp"

#include <torch/optim/adamw.h>
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
                        {"world_size", s.world_size}};
  return boost::json::serialize(o) + "\n";
}

TrainerState parse_state(const fs::path& f) {
  auto v = json::parse_file(f);
  json::Object o(v, f.string());
  TrainerState s{o.integer("step"), o.integer("version"), {}, o.string("shuffle_rng"), o.integer("world_size")};
  for (const auto& v : o.at("records_by_rank").as_array()) s.records_by_rank.push_back(v.as_int64());
  R1_CHECK(static_cast<int64_t>(s.records_by_rank.size()) == s.world_size,
           "{}: records_by_rank has {} entries for {} ranks", f.string(), s.records_by_rank.size(), s.world_size);
  return s;
}

// The AdamW state of each optimized tensor, by parameter name.
std::vector<std::pair<std::string, at::Tensor>> adam_state(const TrainWeights& w, torch::optim::AdamW& opt) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (size_t i = 0; i < w.params().size(); ++i) {
    auto it = opt.state().find(w.params()[i].unsafeGetTensorImpl());
    if (it == opt.state().end()) continue;
    auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
    const std::string& name = w.names()[i];
    tensors.emplace_back(name + ".exp_avg", st.exp_avg());
    tensors.emplace_back(name + ".exp_avg_sq", st.exp_avg_sq());
    tensors.emplace_back(name + ".step", at::tensor({st.step()}, at::kLong));
  }
  return tensors;
}

const std::vector<at::Tensor>* masters_of(const TrainWeights& w) { return w.mixed() ? &w.params() : nullptr; }

}  // namespace

fs::path save_checkpoint(const fs::path& run_dir, CausalLM& policy, const TrainWeights& w, torch::optim::AdamW& opt,
                         const CausalLM* ref, const TrainerState& state, const CheckpointSave& o) {
  R1_CHECK(w.finite(),
           "not saving the checkpoint of step {}: the weights hold NaN or inf (the last good "
           "checkpoint is kept)",
           state.step);
  const fs::path root = run_dir / "checkpoints";
  fs::create_directories(root);
  const std::string name = fmt::format("step-{:06d}", state.step);
  const fs::path tmp = root / fmt::format(".{}.tmp{}", name, std::random_device{}());
  const fs::path dst = root / name;
  fs::remove_all(tmp);
  try {
    // Policy: a Hugging Face folder; tmp/ as a whole is what becomes visible atomically.
    write_pretrained(policy, tmp, {.dtype = o.dtype, .copy_tokenizer_from = o.tokenizer_from, .values = masters_of(w)});
    test_seam::crash_point(test_seam::Point::in_save, state.step);
    fs::create_directories(tmp / "optimizer");
    save_safetensors(tmp / "optimizer", adam_state(w, opt));
    // The float32 weights bit for bit when the Hugging Face copy is of another dtype.
    const at::ScalarType hf_type = o.dtype ? scalar_type(*o.dtype) : policy->options().dtype().toScalarType();
    if (hf_type != at::kFloat)
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
    replace_dir_atomic(tmp, dst);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  // Keep the newest `keep` good checkpoints.
  std::vector<fs::path> all;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0) all.push_back(e.path());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i + static_cast<size_t>(o.keep) < all.size(); ++i) fs::remove_all(all[i]);
  return dst;
}

std::optional<FoundCheckpoint> find_checkpoint(const fs::path& run_dir, std::vector<std::string>* skipped) {
  const fs::path root = run_dir / "checkpoints";
  if (!fs::exists(root)) return std::nullopt;
  std::vector<fs::path> all, interrupted;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (n.rfind('.', 0) == 0)
      interrupted.push_back(e.path());  // every temp name starts with '.'
    else if (e.is_directory() && n.rfind("step-", 0) == 0)
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

// The policy's weights and the masters from a checkpoint of a full fine-tune.
void load_full_weights(const fs::path& dir, CausalLM& policy, TrainWeights& w) {
  CausalLM saved = load_pretrained(dir, policy->options());
  auto from = saved->named_parameters();
  for (auto& p : policy->named_parameters()) p.value().copy_(from[p.key()]);
  if (fs::exists(dir / "masters")) {  // the float32 weights, when the Hugging Face copy is of another dtype
    SafetensorsReader m(dir / "masters");
    for (size_t i = 0; i < w.params().size(); ++i) w.params()[i].detach().copy_(m.get(w.names()[i]));
  } else if (w.mixed()) {  // no masters/: the Hugging Face copy is float32, and it is the masters
    CausalLM exact = load_pretrained(dir, policy->options().dtype(at::kFloat));
    auto ef = exact->named_parameters();
    for (size_t i = 0; i < w.params().size(); ++i) w.params()[i].detach().copy_(ef[w.names()[i]]);
  }
}

// The same for LoRA: the adapters (the base is the run's model, unchanged) and their masters.
void load_lora_weights(const fs::path& dir, CausalLM& policy, TrainWeights& w) {
  load_adapter_weights(policy, dir);
  if (!w.mixed()) return;
  // masters/ when the saved adapters are not float32; else they are the masters.
  std::map<std::string, at::Tensor> m;
  for (auto& [name, t] : read_adapter_weights(policy, fs::exists(dir / "masters") ? dir / "masters" : dir)) m[name] = t;
  for (size_t i = 0; i < w.params().size(); ++i) w.params()[i].detach().copy_(m.at(w.names()[i]));
}

}  // namespace

void load_checkpoint(const fs::path& dir, CausalLM& policy, TrainWeights& w, torch::optim::AdamW& opt, CausalLM* ref) {
  at::NoGradGuard ng;
  if (has_lora(policy))
    load_lora_weights(dir, policy, w);
  else
    load_full_weights(dir, policy, w);
  w.refresh_policy();
  SafetensorsReader r(dir / "optimizer");
  for (size_t i = 0; i < w.params().size(); ++i) {
    const std::string& name = w.names()[i];
    const at::Tensor& p = w.params()[i];
    if (!r.contains(name + ".exp_avg")) continue;
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->exp_avg(r.get(name + ".exp_avg").clone().to(p.device()));
    st->exp_avg_sq(r.get(name + ".exp_avg_sq").clone().to(p.device()));
    st->step(r.get(name + ".step").item<int64_t>());
    opt.state()[p.unsafeGetTensorImpl()] = std::move(st);
  }
  if (ref) {
    R1_CHECK(fs::exists(dir / "reference"), "{}: the run keeps a reference model but the checkpoint has none",
             dir.string());
    CausalLM saved_ref = load_pretrained(dir / "reference", (*ref)->options());
    auto rf = saved_ref->named_parameters();
    for (auto& p : (*ref)->named_parameters()) p.value().copy_(rf[p.key()]);
  }
}

}  // namespace r1
