#include "policy/lora.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/ranges.h>

#include <boost/json.hpp>
#include <cmath>
#include <set>

#include "common/config_fields.hpp"
#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/json.hpp"
#include "policy/checkpoint.hpp"
#include "policy/safetensors.hpp"

namespace fs = std::filesystem;

namespace r1 {

namespace {

constexpr const char* kPeftPrefix = "base_model.model.";
const std::vector<LoraTarget> kEveryProjection = {LoraTarget::q_proj,   LoraTarget::k_proj,    LoraTarget::v_proj,
                                                  LoraTarget::o_proj,   LoraTarget::gate_proj, LoraTarget::up_proj,
                                                  LoraTarget::down_proj};

std::string name_of(LoraTarget t) { return enum_names(t)[static_cast<size_t>(t)]; }

// The targeted module names, each once, all-linear expanded.
std::set<std::string> target_names(const LoraOptions& o) {
  std::set<std::string> out;
  for (LoraTarget t : o.target_modules)
    if (t == LoraTarget::all_linear)
      for (LoraTarget p : kEveryProjection) out.insert(name_of(p));
    else
      out.insert(name_of(t));
  return out;
}

LinearImpl* linear_of(CausalLM& model, size_t layer, const std::string& name) {
  auto& l = *model->model->layers->ptr<DecoderLayerImpl>(layer);
  if (name == "q_proj") return l.self_attn->q_proj.get();
  if (name == "k_proj") return l.self_attn->k_proj.get();
  if (name == "v_proj") return l.self_attn->v_proj.get();
  if (name == "o_proj") return l.self_attn->o_proj.get();
  if (name == "gate_proj") return l.mlp->gate_proj.get();
  if (name == "up_proj") return l.mlp->up_proj.get();
  if (name == "down_proj") return l.mlp->down_proj.get();
  fail("LoRA: unknown target module '{}'", name);
}

std::string prefix_of(size_t layer, const std::string& name) {
  const bool attn = name != "gate_proj" && name != "up_proj" && name != "down_proj";
  return fmt::format("model.layers.{}.{}.{}", layer, attn ? "self_attn" : "mlp", name);
}

const at::Tensor& value_named(const NamedTensors& values, const std::string& name) {
  for (const auto& [n, t] : values)
    if (n == name) return t;
  fail("LoRA: no value for adapter parameter '{}'", name);
}

}  // namespace

std::vector<std::pair<std::string, LinearImpl*>> lora_targets(CausalLM& model, const LoraOptions& o) {
  R1_CHECK(o.rank >= 1, "LoRA: rank must be >= 1, got {}", o.rank);
  const std::set<std::string> names = target_names(o);
  std::vector<std::pair<std::string, LinearImpl*>> out;
  for (size_t l = 0; l < model->model->layers->size(); ++l)
    for (LoraTarget t : kEveryProjection)  // module order within a layer, as named_parameters lists them
      if (names.count(name_of(t))) out.emplace_back(prefix_of(l, name_of(t)), linear_of(model, l, name_of(t)));
  return out;
}

NamedTensors init_lora(CausalLM& model, const LoraOptions& o, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  NamedTensors out;
  for (auto& [prefix, lin] : lora_targets(model, o)) {
    const int64_t out_f = lin->weight.size(0), in_f = lin->weight.size(1);
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_f));  // kaiming_uniform_(a = sqrt(5))
    out.emplace_back(prefix + ".lora_A.weight", at::empty({o.rank, in_f}, at::kFloat).uniform_(-bound, bound, gen));
    out.emplace_back(prefix + ".lora_B.weight", at::zeros({out_f, o.rank}, at::kFloat));
  }
  return out;
}

void add_lora(CausalLM& model, const LoraOptions& o, const NamedTensors& values) {
  R1_CHECK(!has_lora(model), "LoRA: the model already has adapters");
  at::NoGradGuard ng;
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  const at::TensorOptions opts = model->options();
  for (auto& [prefix, lin] : lora_targets(model, o)) {
    const int64_t out_f = lin->weight.size(0), in_f = lin->weight.size(1);
    lin->lora_A = lin->register_module("lora_A", std::make_shared<LinearImpl>(in_f, o.rank, false, opts));
    lin->lora_B = lin->register_module("lora_B", std::make_shared<LinearImpl>(o.rank, out_f, false, opts));
    for (auto [part, mod] : {std::pair{".lora_A.weight", lin->lora_A}, std::pair{".lora_B.weight", lin->lora_B}}) {
      const at::Tensor& v = value_named(values, prefix + part);
      R1_CHECK(v.sizes() == mod->weight.sizes(), "LoRA: {}{} has shape {}, the adapter {}", prefix, part, v.sizes(),
               mod->weight.sizes());
      mod->weight.copy_(v);
    }
    lin->lora_scale = o.alpha / static_cast<double>(o.rank);
    lin->lora_dropout = o.dropout;
    lin->lora_enabled = true;
  }
  model->lora = o;
}

bool has_lora(const CausalLM& model) { return model->lora.enabled(); }

bool is_lora_parameter(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
}

NamedTensors lora_parameters(CausalLM& model) {
  NamedTensors out;
  for (auto& p : model->named_parameters())
    if (is_lora_parameter(p.key())) out.emplace_back(p.key(), p.value());
  return out;
}

std::string peft_key(const std::string& name) { return kPeftPrefix + name; }

void set_lora_enabled(CausalLM& model, bool enabled) {
  if (!has_lora(model)) return;
  for (auto& [prefix, lin] : lora_targets(model, model->lora)) lin->lora_enabled = enabled;
}

CausalLM adapter_replica(CausalLM& model) {
  R1_CHECK(has_lora(model), "adapter_replica: the model has no adapters");
  // The constructor's base parameters are never written (untouched pages cost no memory) and are
  // dropped as each one is pointed at the model's tensor.
  CausalLM r(model->config(), model->options());
  auto from = model->named_parameters();
  {
    at::NoGradGuard ng;
    for (auto& p : r->named_parameters()) p.value().set_data(from[p.key()]);
  }
  add_lora(r, model->lora, lora_parameters(model));
  r->source_dir = model->source_dir;
  return r;
}

void merge_lora(CausalLM& model) {
  R1_CHECK(has_lora(model), "merge_lora: the model has no adapters");
  at::NoGradGuard ng;
  for (auto& [prefix, lin] : lora_targets(model, model->lora)) {
    at::Tensor delta = at::mm(lin->lora_B->weight.to(at::kFloat), lin->lora_A->weight.to(at::kFloat));  // [out, in]
    lin->weight.copy_(lin->weight.to(at::kFloat).add(delta, lin->lora_scale));  // summed in float32, rounded once
    lin->unregister_module("lora_A");
    lin->unregister_module("lora_B");
    lin->lora_A.reset(), lin->lora_B.reset();
  }
  for (auto& p : model->parameters()) p.set_requires_grad(true);
  model->lora = LoraOptions{};
}

bool is_adapter_dir(const fs::path& dir) { return fs::exists(dir / "adapter_config.json"); }

AdapterConfig read_adapter_config(const fs::path& dir) {
  const fs::path file = dir / "adapter_config.json";
  const boost::json::value v = json::parse_file(file);
  json::Object o(v, file.string());
  R1_CHECK(o.string("peft_type") == "LORA", "{}: peft_type '{}' is not LORA", file.string(), o.string("peft_type"));
  auto refuse_if = [&](bool bad, const char* what) {
    R1_CHECK(!bad, "{}: {} is not supported by r1 (plain LoRA only)", file.string(), what);
  };
  refuse_if(o.boolean_or("use_dora").value_or(false), "use_dora");
  refuse_if(o.boolean_or("use_rslora").value_or(false), "use_rslora");
  refuse_if(o.boolean_or("fan_in_fan_out").value_or(false), "fan_in_fan_out");
  refuse_if(o.string_or("bias").value_or("none") != "none", "a trained bias");
  refuse_if(o.has("modules_to_save"), "modules_to_save");
  refuse_if(o.has("layers_to_transform"), "layers_to_transform");
  for (const char* k : {"rank_pattern", "alpha_pattern"}) refuse_if(o.has(k) && !o.at(k).as_object().empty(), k);
  AdapterConfig c;
  c.lora.rank = o.integer("r");
  c.lora.alpha = o.number("lora_alpha");
  c.lora.dropout = o.number_or("lora_dropout").value_or(0.0);
  c.lora.target_modules.clear();
  const boost::json::value& targets = o.at("target_modules");
  std::vector<std::string> names;
  if (targets.is_string())
    names.push_back(std::string(targets.as_string()));
  else
    for (const auto& t : targets.as_array()) names.push_back(std::string(t.as_string()));
  for (const std::string& n : names) {
    std::optional<LoraTarget> t = cfg::parse_enum<LoraTarget>(n);
    R1_CHECK(t.has_value(), "{}: target module '{}' is not one of {}", file.string(), n, cfg::choices_of<LoraTarget>());
    c.lora.target_modules.push_back(*t);
  }
  R1_CHECK(c.lora.rank >= 1 && c.lora.alpha > 0 && !c.lora.target_modules.empty(),
           "{}: r must be >= 1, lora_alpha > 0 and target_modules not empty", file.string());
  c.base_model = o.string_or("base_model_name_or_path").value_or("");
  return c;
}

void write_adapter(CausalLM& model, const fs::path& dir, at::ScalarType dtype, const std::vector<at::Tensor>* values) {
  R1_CHECK(has_lora(model), "write_adapter: the model has no adapters");
  fs::create_directories(dir);
  const NamedTensors params = lora_parameters(model);
  R1_CHECK(!values || values->size() == params.size(), "write_adapter: {} values for {} adapter parameters",
           values ? values->size() : 0, params.size());
  NamedTensors tensors;
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& v = values ? (*values)[i] : params[i].second;
    R1_CHECK(v.sizes() == params[i].second.sizes(), "write_adapter: the value for {} has shape {}, the adapter {}",
             params[i].first, v.sizes(), params[i].second.sizes());
    tensors.emplace_back(peft_key(params[i].first), v.detach().to(at::kCPU, dtype));
  }
  save_safetensors(dir, tensors, {.max_shard_bytes = INT64_MAX, .file_stem = "adapter_model"});
  const LoraOptions& o = model->lora;
  boost::json::array targets;
  for (const std::string& n : target_names(o)) targets.emplace_back(n);
  boost::json::object c{
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path",
       model->source_dir.empty() ? std::string() : fs::absolute(model->source_dir).lexically_normal().string()},
      {"r", o.rank},
      {"lora_alpha", o.alpha},
      {"lora_dropout", o.dropout},
      {"target_modules", std::move(targets)},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"use_rslora", false},
      {"use_dora", false},
      {"init_lora_weights", true},
      {"inference_mode", true},
      {"modules_to_save", nullptr},
      {"rank_pattern", boost::json::object{}},
      {"alpha_pattern", boost::json::object{}}};
  write_file_atomic(dir / "adapter_config.json", boost::json::serialize(c) + "\n");
}

NamedTensors read_adapter_weights(CausalLM& model, const fs::path& dir) {
  SafetensorsReader reader(dir / "adapter_model.safetensors");
  NamedTensors out;
  std::set<std::string> used;
  for (auto& [name, p] : lora_parameters(model)) {
    const std::string key = peft_key(name);
    R1_CHECK(reader.contains(key), "{}: adapter tensor '{}' is missing (rank {}, targets {})", dir.string(), key,
             model->lora.rank, fmt::join(target_names(model->lora), ","));
    at::Tensor t = reader.get(key);
    R1_CHECK(t.sizes() == p.sizes(), "{}: shape {}, the adapter is {}", reader.where(key), t.sizes(), p.sizes());
    out.emplace_back(name, t);
    used.insert(key);
  }
  for (const auto& [key, e] : reader.entries())
    R1_CHECK(used.count(key), "{} is not an adapter of this model (unexpected tensor)", reader.where(key));
  return out;
}

void load_adapter_weights(CausalLM& model, const fs::path& dir) {
  at::NoGradGuard ng;
  const NamedTensors values = read_adapter_weights(model, dir);
  auto named = model->named_parameters();
  for (const auto& [name, v] : values) named[name].copy_(v);
}

CausalLM load_adapter_model(const fs::path& dir, const at::TensorOptions& opts) {
  const AdapterConfig c = read_adapter_config(dir);
  // A relative base is looked up beside the adapter folder first, then from the working directory.
  fs::path base = c.base_model;
  if (base.is_relative() && fs::is_directory(dir / base)) base = dir / base;
  R1_CHECK(!base.empty() && fs::is_directory(base),
           "{}: base_model_name_or_path '{}' is not a model folder on this machine", dir.string(),
           c.base_model.string());
  CausalLM model = load_pretrained(base, opts);
  add_lora(model, c.lora, init_lora(model, c.lora, 0));
  load_adapter_weights(model, dir);
  return model;
}

void export_merged(const fs::path& adapter_dir, const fs::path& out, std::optional<Dtype> dtype) {
  CausalLM model = load_adapter_model(adapter_dir, at::TensorOptions().dtype(at::kFloat));
  merge_lora(model);
  if (!dtype) {
    const std::string& d = model->config().dtype;
    dtype = d == "bfloat16" ? Dtype::bfloat16 : d == "float16" ? Dtype::float16 : Dtype::float32;
  }
  const bool own_tokenizer = fs::exists(adapter_dir / "tokenizer.json");
  save_pretrained(model, out, {.dtype = dtype, .copy_tokenizer_from = own_tokenizer ? adapter_dir : model->source_dir});
}

}  // namespace r1
