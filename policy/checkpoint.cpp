#include "policy/checkpoint.hpp"

#include <fmt/ranges.h>

#include <random>
#include <set>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "policy/device.hpp"
#include "policy/lora.hpp"
#include "policy/safetensors.hpp"

namespace fs = std::filesystem;

namespace r1 {

at::ScalarType scalar_type(Dtype dtype) {
  switch (dtype) {
    case Dtype::float32: return at::kFloat;
    case Dtype::bfloat16: return at::kBFloat16;
    case Dtype::float16: return at::kHalf;
  }
  fail("unknown dtype {}", static_cast<int>(dtype));
}

at::TensorOptions tensor_options(Dtype dtype, const std::string& device) {
  return at::TensorOptions().dtype(scalar_type(dtype)).device(parse_device(device));
}

CausalLM load_pretrained(const fs::path& dir, const at::TensorOptions& opts) {
  R1_CHECK(fs::is_directory(dir), "model folder {} does not exist (expected config.json and *.safetensors)",
           dir.string());
  if (!fs::exists(dir / "config.json") && is_adapter_dir(dir)) return load_adapter_model(dir, opts);
  R1_CHECK(fs::exists(dir / "config.json"), "{}: no config.json in the model folder", dir.string());
  ModelConfig config = ModelConfig::from_file(dir / "config.json");
  SafetensorsReader reader(dir);
  CausalLM model(config, opts);

  at::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    R1_CHECK(reader.contains(name), "{}: tensor '{}' is missing from the checkpoint (model_type {}, {} layers)",
             dir.string(), name, config.model_type, config.num_hidden_layers);
    at::Tensor src = reader.get(name);
    R1_CHECK(src.sizes() == p.value().sizes(), "{}: shape {} but config.json implies {}", reader.where(name),
             fmt::format("{}", fmt::join(src.sizes(), "x")), fmt::format("{}", fmt::join(p.value().sizes(), "x")));
    p.value().copy_(src);
    reader.release(name);
    used.insert(name);
  }
  for (const auto& [name, entry] : reader.entries()) {
    if (used.count(name)) continue;
    // Tied checkpoints sometimes also store lm_head.weight; accept it only when it is the embedding.
    if (name == "lm_head.weight" && config.tie_word_embeddings) {
      at::Tensor emb = reader.get("model.embed_tokens.weight");
      R1_CHECK(reader.get(name).equal(emb),
               "{}: tie_word_embeddings is true but lm_head.weight differs from "
               "model.embed_tokens.weight; set tie_word_embeddings to false in config.json",
               reader.where(name));
      continue;
    }
    fail("{} is not a parameter of this {} model (unexpected tensor; is config.json right for these weights?)",
         reader.where(name), config.model_type);
  }
  model->source_dir = dir;
  return model;
}

CausalLM load_pretrained(const PolicyOptions& options) {
  if (options.threads > 0) pin_cpu_threads(static_cast<int>(options.threads));
  return load_pretrained(options.model_dir(), tensor_options(options.dtype, options.device));
}

static std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: fail("cannot save parameters of dtype {}", c10::toString(t));
  }
}

namespace {

void copy_tokenizer_files(const fs::path& from, const fs::path& dir) {
  if (from.empty()) return;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                        "vocab.json", "merges.txt"}) {
    fs::path src = from / f;
    if (fs::exists(src)) fs::copy_file(src, dir / f, fs::copy_options::overwrite_existing);
  }
}

}  // namespace

void write_pretrained(CausalLM& model, const fs::path& dir, const SaveOptions& options) {
  fs::create_directories(dir);
  at::ScalarType out_type = model->options().dtype().toScalarType();
  if (options.dtype) out_type = scalar_type(*options.dtype);
  if (has_lora(model)) {
    write_adapter(model, dir, out_type, options.values);
    copy_tokenizer_files(options.copy_tokenizer_from, dir);
    return;
  }
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  auto named = model->named_parameters();
  R1_CHECK(!options.values || options.values->size() == named.size(), "save: {} values for {} parameters",
           options.values ? options.values->size() : 0, named.size());
  for (size_t i = 0; i < named.size(); ++i) {
    const at::Tensor& v = options.values ? (*options.values)[i] : named[i].value();
    R1_CHECK(v.sizes() == named[i].value().sizes(), "save: the value for {} has shape {}, the parameter {}",
             named[i].key(), v.sizes(), named[i].value().sizes());
    tensors.emplace_back(named[i].key(), v.detach().to(at::kCPU, out_type));
  }
  SafetensorsSaveOptions so;
  so.max_shard_bytes = options.max_shard_bytes;
  save_safetensors(dir, tensors, so);

  ModelConfig cfg = model->config();
  cfg.dtype = dtype_name(out_type);
  write_file_atomic(dir / "config.json", cfg.to_json());
  copy_tokenizer_files(options.copy_tokenizer_from, dir);
}

void save_pretrained(CausalLM& model, const fs::path& dir, const SaveOptions& options) {
  fs::path parent = fs::absolute(dir).parent_path();
  fs::create_directories(parent);
  fs::path tmp = parent / fmt::format(".{}.saving{}", dir.filename().string(), std::random_device{}());
  try {
    write_pretrained(model, tmp, options);
    replace_dir_atomic(tmp, dir);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace r1
