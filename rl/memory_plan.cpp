#include "rl/memory_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "common/error.hpp"
#include "policy/device.hpp"
#include "policy/logprobs.hpp"
#include "policy/tokenizer.hpp"
#include "rl/distributed.hpp"
#include "rollout/dataset.hpp"

namespace r1 {

namespace {

constexpr double kGB = 1e9;

// The process before any model: the r1 program's pages (LibTorch, oneDNN; `r1 --help` peaks at
// 0.47 GB on CPU), the allocator's arenas, the reward backend and the datasets; a tokenizer takes
// about 6x its JSON in memory.
constexpr double kRuntimeBytes = 0.45 * kGB;
constexpr double kTokenizerPerJsonByte = 6.0;

// On CPU the heap keeps freed memory (common/memory.hpp): backward's transients that fit no hole
// beside the live activations grow it past them. Peak RSS minus the same run's peak with every
// block mmapped (MALLOC_MMAP_THRESHOLD_=65536, no reuse) is 14-18% of the activations on the 25M
// model, with and without LoRA.
constexpr double kCpuSlack = 0.15;

double dtype_bytes(Dtype d) { return d == Dtype::float32 ? 4.0 : 2.0; }

struct Shape {
  double H, I, L, V, q, kv;  // hidden, MLP, layers, vocabulary, Hq * D, Hkv * D
};

Shape shape_of(const ModelConfig& m) {
  return {static_cast<double>(m.hidden_size),
          static_cast<double>(m.intermediate_size),
          static_cast<double>(m.num_hidden_layers),
          static_cast<double>(m.vocab_size),
          static_cast<double>(m.num_attention_heads * m.head_dim),
          static_cast<double>(m.num_key_value_heads * m.head_dim)};
}

// Bytes one token keeps for backward in one decoder layer, in elements of the compute dtype: the
// norms' inputs and outputs, q/k/v before and after RoPE, the attention output and its reshaped
// copy, the residual sums, and the MLP's gate, up, silu(gate) and product.
double layer_elems_per_token(const Shape& s) { return 5 * s.H + 4 * s.q + 3 * s.kv + 4 * s.I; }

struct Workload {
  double micro_tokens;  // prompt + completion tokens of the largest training micro-batch
  double micro_rows;    // packed completion rows
  double width;         // tokens per packed row
  double keys;          // keys each row attends to (its prompts, then itself)
  double rollout_rows;  // sequences a rollout worker decodes together
  double rollout_prompts;
  double prompt, completion;
};

Workload workload(const RunConfig& cfg, const PlanInputs& in) {
  Workload w;
  w.prompt = static_cast<double>(std::max<int64_t>(1, in.longest_prompt));
  w.completion = static_cast<double>(cfg.sampling.max_new_tokens);
  const double G = static_cast<double>(cfg.rollout.group_size);
  const double micro = static_cast<double>(cfg.train.micro_batch);
  const double step_seqs = static_cast<double>(cfg.rollout.prompts_per_step) * G;
  w.micro_rows = std::min(micro, step_seqs);  // at the longest, every completion fills its own row
  const double prompts = std::min(w.micro_rows, std::ceil(w.micro_rows / G) + 1);
  w.micro_tokens = w.micro_rows * w.completion + prompts * w.prompt;
  w.width = w.completion;
  w.keys = w.prompt + w.width;
  w.rollout_rows =
      std::min(static_cast<double>(cfg.rollout.max_batch), static_cast<double>(cfg.rollout.prompts_per_batch) * G);
  w.rollout_prompts = std::ceil(w.rollout_rows / G);
  return w;
}

void add(MemoryPlan& p, std::string name, double bytes, std::string detail, std::string setting,
         MemoryPhase phase = MemoryPhase::resident) {
  if (bytes > 0) p.parts.push_back({std::move(name), bytes, std::move(detail), std::move(setting), phase});
}

// The compute weights: whole, or at ZeRO stage 3 (full fine-tune) the embeddings and the two
// decoder layers gathered at a time for all the run, and the other layers only while generating.
void weight_parts(MemoryPlan& p, const RunConfig& cfg, const PlanInputs& in) {
  const double N = static_cast<double>(p.params), s = dtype_bytes(cfg.model.dtype);
  const ModelConfig& m = in.model;
  const double L = static_cast<double>(m.num_hidden_layers);
  const double rest =
      static_cast<double>(m.vocab_size * m.hidden_size * (m.tie_word_embeddings ? 1 : 2) + m.hidden_size);
  const double per_layer = (N - rest) / L;
  if (cfg.distributed.zero_stage < 3 || cfg.lora.enabled() || L <= 2) {
    add(p, "weights", N * s, fmt::format("{:.0f}M parameters x {} B", N / 1e6, s), "[model] dtype");
    return;
  }
  add(p, "weights", (rest + 2 * per_layer) * s,
      fmt::format("ZeRO 3: embeddings and 2 of {:.0f} layers gathered, {} B each", L, s), "[model] dtype");
  add(p, "gathered layers", (L - 2) * per_layer * s, "ZeRO 3: the other layers, whole while generating",
      "[distributed] zero_stage < 3 keeps them all run", MemoryPhase::rollout);
}

// What AdamW updates and its gradients: whole, or this rank's 1/W under ZeRO.
void optimizer_parts(MemoryPlan& p, const RunConfig& cfg, const PlanInputs& in, double T, const std::string& what) {
  const bool mixed = cfg.train.precision == Precision::bf16_mixed, lora = cfg.lora.enabled();
  const int64_t Z = cfg.distributed.zero_stage;
  const double W = Z >= 1 ? static_cast<double>(in.world_size) : 1.0, s = dtype_bytes(cfg.model.dtype);
  const std::string full = lora ? "[lora] rank" : "[lora] rank > 0";
  const std::string shard = Z >= 1 ? fmt::format(", 1/{:.0f} (ZeRO {})", W, Z) : "";
  const std::string more = Z >= 1 ? full : "[distributed] zero_stage >= 1 over more ranks, or " + full;
  if (mixed || Z >= 1)
    add(p, "masters", T * 4 / W, (mixed ? "float32 master weights" : "float32 chunks AdamW steps") + what + shard,
        mixed ? "[train] precision" : "[distributed] zero_stage = 0");
  const double unit = 2 * T / static_cast<double>(std::max<int64_t>(1, in.model.num_hidden_layers));  // two layers
  if (Z >= 2)
    add(p, "gradients", T * 4 / W + unit * (s + 4),
        "float32 chunks" + what + shard + ", and two layers' gradients in flight", full);
  else if (Z == 1)  // a unit's whole gradients go as its chunk arrives
    add(p, "gradients", T * (mixed ? 6 : 4) + unit * 8, "whole while accumulating, then float32 chunks" + what + shard,
        "[distributed] zero_stage = 2");
  else
    add(p, "gradients", T * (mixed ? 6 : 4),
        (mixed ? "float32 master gradients + one bf16 gradient" : std::string("float32")) + what, more);
  add(p, "optimizer", T * 8 / W, "AdamW moments, float32" + what + shard, more);
}

// What lives for the whole run. Under LoRA the base is frozen: gradients, masters, optimizer state
// and the workers' copies are the adapters' alone, and the KL reference is the base itself.
void resident_parts(MemoryPlan& p, const RunConfig& cfg, const PlanInputs& in) {
  const double N = static_cast<double>(p.params), s = dtype_bytes(cfg.model.dtype);
  const bool lora = cfg.lora.enabled();
  const double T = lora ? static_cast<double>(p.adapter_params) : N;  // trained parameters
  const std::string what = lora ? fmt::format(" of the {:.1f}M adapter parameters", T / 1e6) : "";
  add(p, "runtime", kRuntimeBytes + kTokenizerPerJsonByte * static_cast<double>(in.tokenizer_bytes),
      "LibTorch, allocator arenas, tokenizer, datasets", "");
  weight_parts(p, cfg, in);
  if (lora)
    add(p, "adapters", T * s, fmt::format("LoRA rank {}: {:.1f}M parameters", cfg.lora.rank, T / 1e6), "[lora] rank");
  optimizer_parts(p, cfg, in, T, what);
  if (cfg.grpo.kl_coef > 0 && !lora)
    add(p, "reference", N * s, "frozen reference for the KL penalty", "[grpo] kl_coef = 0, or [lora] rank > 0");
  if (cfg.rollout.max_policy_lag >= 1) {
    const std::string copy = lora ? "the adapters (the base is shared)" : "a compute copy";
    add(p, "sampler copy", T * s, copy + " every rollout worker samples from, updated in place",
        "[rollout] max_policy_lag = 0");
    if (cfg.train.old_logprobs == OldLogprobs::recompute)
      add(p, "behaviour copy", T * s, copy + ": the weights that sampled a lagged group",
          "[train] old_logprobs = \"rollout\"");
  }
}

// The training phase at the longest sequences: activations kept for backward, the transients of
// one layer's backward, and the vocabulary's logit chunks.
void training_parts(MemoryPlan& p, const RunConfig& cfg, const Shape& sh, const Workload& w) {
  const double s = dtype_bytes(cfg.model.dtype), tok = w.micro_tokens;
  const double per_layer = layer_elems_per_token(sh) * s * tok;
  const bool ckpt = cfg.train.activation_checkpointing == ActivationCheckpointing::layers;
  const double every = static_cast<double>(cfg.train.checkpoint_every);
  const double kept_layers = ckpt ? std::floor((sh.L - 1) / every) + 1 : 0;  // layers 0, k, 2k, ...
  const double full_layers = sh.L - kept_layers;
  // The attention mask [rows, 1, W, keys] (bool) and the final hidden states gathered for the logits.
  const double common = w.micro_rows * w.width * w.keys + 3 * tok * sh.H * s;
  const double acts = full_layers * per_layer + kept_layers * tok * sh.H * s + (ckpt ? per_layer : 0) + common;
  add(p, "activations", acts,
      fmt::format("{:.0f} tokens (micro_batch {} at {} + prompts), {:.0f} of {:.0f} layers kept whole", tok,
                  cfg.train.micro_batch, cfg.sampling.max_new_tokens, full_layers, sh.L),
      ckpt ? "[train] micro_batch, [sampling] max_new_tokens" : "[train] activation_checkpointing = \"layers\"",
      MemoryPhase::training);
  if (cfg.model.device == "cpu")
    add(p, "allocator slack", kCpuSlack * acts, "freed backward transients glibc's heap keeps beside the activations",
        "[train] activation_checkpointing, micro_batch", MemoryPhase::training);
  const double chunk = static_cast<double>(logit_chunk_rows(static_cast<int64_t>(sh.V)));
  add(p, "logit chunks", 4 * chunk * sh.V * 4, fmt::format("4 x [{:.0f}, {:.0f}] float32 in backward", chunk, sh.V), "",
      MemoryPhase::training);
}

// The rollout phase: every worker's paged KV cache and its logits. A prompt's blocks serve its G
// samples; on CPU only the blocks in use take memory, on a GPU the pool is allocated whole.
void rollout_parts(MemoryPlan& p, const RunConfig& cfg, const Shape& sh, const Workload& w) {
  const double s = dtype_bytes(cfg.model.dtype), workers = static_cast<double>(cfg.rollout.workers);
  const double bs = static_cast<double>(cfg.rollout.kv_block_size);
  auto blocks = [&](double tokens) { return std::ceil(tokens / bs); };
  double slots = bs * (w.rollout_prompts * blocks(w.prompt) + w.rollout_rows * blocks(w.completion + bs));
  std::string detail =
      fmt::format("{} worker(s) x {:.0f} prompts x {:.0f} + {:.0f} sequences x {:.0f} tokens, in blocks of {:.0f}",
                  cfg.rollout.workers, w.rollout_prompts, w.prompt, w.rollout_rows, w.completion, bs);
  if (cfg.rollout.kv_blocks > 0 || cfg.model.device != "cpu") {
    const double pool = cfg.rollout.kv_blocks > 0
                            ? static_cast<double>(cfg.rollout.kv_blocks)
                            : static_cast<double>(cfg.rollout.max_batch) * blocks(w.prompt + w.completion);
    slots = pool * bs;
    detail = fmt::format("{} worker(s) x a pool of {:.0f} blocks of {:.0f} tokens", cfg.rollout.workers, pool, bs);
  }
  add(p, "KV cache", workers * sh.L * 2 * sh.kv * s * slots, detail,
      "[rollout] max_batch, kv_blocks, kv_block_size, [sampling] max_new_tokens", MemoryPhase::rollout);
  add(p, "rollout logits", workers * (w.rollout_rows * sh.V * 4 * 3 + w.rollout_prompts * w.prompt * sh.I * s * 3),
      "per decode step [sequences, V] float32, and the prefill's largest intermediates", "", MemoryPhase::rollout);
}

double sum_of(const MemoryPlan& p, MemoryPhase phase) {
  double total = 0;
  for (const auto& part : p.parts)
    if (part.phase == phase) total += part.bytes;
  return total;
}

}  // namespace

int64_t parameter_count(const ModelConfig& m) {
  const int64_t H = m.hidden_size, I = m.intermediate_size, q = m.num_attention_heads * m.head_dim,
                kv = m.num_key_value_heads * m.head_dim;
  int64_t layer = H * q + 2 * H * kv + q * H + 3 * H * I + 2 * H;
  if (m.qkv_bias) layer += q + 2 * kv;
  if (m.o_bias) layer += H;
  if (m.mlp_bias) layer += 2 * I + H;
  if (m.qk_norm) layer += 2 * m.head_dim;
  return m.vocab_size * H * (m.tie_word_embeddings ? 1 : 2) + m.num_hidden_layers * layer + H;
}

int64_t adapter_parameter_count(const ModelConfig& m, const LoraOptions& o) {
  if (!o.enabled()) return 0;
  const int64_t H = m.hidden_size, I = m.intermediate_size, q = m.num_attention_heads * m.head_dim,
                kv = m.num_key_value_heads * m.head_dim;
  std::set<LoraTarget> t(o.target_modules.begin(), o.target_modules.end());
  auto has = [&](LoraTarget x) { return t.count(x) || t.count(LoraTarget::all_linear); };
  int64_t per_layer = 0;  // r (in + out) per adapted projection
  if (has(LoraTarget::q_proj)) per_layer += H + q;
  if (has(LoraTarget::k_proj)) per_layer += H + kv;
  if (has(LoraTarget::v_proj)) per_layer += H + kv;
  if (has(LoraTarget::o_proj)) per_layer += q + H;
  if (has(LoraTarget::gate_proj)) per_layer += H + I;
  if (has(LoraTarget::up_proj)) per_layer += H + I;
  if (has(LoraTarget::down_proj)) per_layer += I + H;
  return o.rank * per_layer * m.num_hidden_layers;
}

PlanInputs plan_inputs(const RunConfig& cfg) {
  PlanInputs in;
  in.world_size = LaunchEnv::from_environment().world_size;
  const auto dir = cfg.model.model_dir();
  in.model = ModelConfig::from_file(dir / "config.json");
  in.tokenizer_bytes = static_cast<int64_t>(std::filesystem::file_size(dir / "tokenizer.json"));
  const Tokenizer tok = Tokenizer::load(dir / "tokenizer.json");
  auto longest = [&](const DatasetOptions& o) {
    Dataset d(o);
    for (size_t i = 0; i < d.size(); ++i)
      in.longest_prompt = std::max<int64_t>(in.longest_prompt, static_cast<int64_t>(tok.encode(d.at(i).prompt).size()));
  };
  longest(cfg.data);
  if (!cfg.eval.path.empty()) {
    DatasetOptions eo = cfg.data;
    eo.path = cfg.eval.path;
    eo.limit = cfg.eval.limit;
    longest(eo);
  }
  return in;
}

MemoryPlan plan_memory(const RunConfig& cfg, const PlanInputs& in) {
  MemoryPlan p;
  p.params = parameter_count(in.model);
  p.adapter_params = adapter_parameter_count(in.model, cfg.lora);
  const Shape sh = shape_of(in.model);
  const Workload w = workload(cfg, in);
  resident_parts(p, cfg, in);
  training_parts(p, cfg, sh, w);
  rollout_parts(p, cfg, sh, w);
  const double resident = sum_of(p, MemoryPhase::resident), train = sum_of(p, MemoryPhase::training),
               rollout = sum_of(p, MemoryPhase::rollout);
  p.peak = resident + (cfg.rollout.max_policy_lag >= 1 ? train + rollout : std::max(train, rollout));
  if (cfg.model.memory_limit_gb > 0) {
    p.limit = cfg.model.memory_limit_gb * kGB;
    p.limit_source = "[model] memory_limit_gb";
  } else {
    p.limit = device_memory_bytes(cfg.model.device);
    p.limit_source = cfg.model.device + " memory";
  }
  return p;
}

std::string describe(const MemoryPlan& plan) {
  std::vector<const MemoryPart*> order;
  for (const auto& part : plan.parts) order.push_back(&part);
  std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->bytes > b->bytes; });
  std::string out = fmt::format("memory plan per device ({:.0f}M parameters)\n", plan.params / 1e6);
  for (const MemoryPart* part : order)
    out += fmt::format("  {:<20} {:>8.2f} GB  {}{}\n", part->name, part->bytes / kGB, part->detail,
                       part->phase == MemoryPhase::resident  ? ""
                       : part->phase == MemoryPhase::rollout ? " [rollout]"
                                                             : " [training]");
  out += fmt::format("  {:<20} {:>8.2f} GB  resident + {} of the rollout and training phases\n", "expected peak",
                     plan.peak / kGB, "the larger (max_policy_lag 0) or the sum");
  if (plan.limit > 0) out += fmt::format("  {:<20} {:>8.2f} GB  {}\n", "limit", plan.limit / kGB, plan.limit_source);
  return out;
}

void check_memory(const MemoryPlan& plan) {
  if (plan.limit <= 0 || plan.peak <= plan.limit) return;
  std::vector<const MemoryPart*> order;
  for (const auto& part : plan.parts) order.push_back(&part);
  std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->bytes > b->bytes; });
  std::string largest;
  for (size_t i = 0; i < std::min<size_t>(3, order.size()); ++i)
    largest += fmt::format("{}{} {:.2f} GB{}", i ? ", " : "", order[i]->name, order[i]->bytes / kGB,
                           order[i]->setting.empty() ? "" : " (" + order[i]->setting + ")");
  throw ConfigError(fmt::format(
      "memory: the run's plan needs {:.2f} GB per device, over the {:.2f} GB of {}; largest: {}. Change the settings "
      "named, or see r1 train --plan CONFIG",
      plan.peak / kGB, plan.limit / kGB, plan.limit_source, largest));
}

}  // namespace r1
