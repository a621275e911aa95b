// r1 pretrain: next-token pretraining of a tiny base model on the synthetic arithmetic textbook
// (rl/arith.hpp), and the held-out RL/eval problem files. Deterministic for a given seed and thread
// count; this is how models/r1zero-tiny and data/arith/ were made.
#pragma once
#include <filesystem>

#include "common/config_fields.hpp"
#include "policy/model.hpp"

namespace r1 {

struct PretrainOptions {
#define R1_PRETRAIN_FIELDS(F)                                                                                 \
  F(std::string, out, "models/r1zero-tiny", "model folder written (Hugging Face format)", !x.empty())         \
  F(std::string, tokenizer, "tests/fixtures/tokenizer/tiny", "folder with tokenizer.json to use", !x.empty()) \
  F(std::string, data_dir, "data/arith", "where rl_train.jsonl and heldout.jsonl are written", !x.empty())    \
  F(int64_t, rl_problems, 4000, "held-out problems for GRPO (rl_train.jsonl)", x >= 1)                        \
  F(int64_t, eval_problems, 200, "held-out problems for evaluation (heldout.jsonl)", x >= 1)                  \
  F(double, careless_rate, 0.6, "fraction of worked solutions that forget the carry", x >= 0 && x <= 1)       \
  F(int64_t, hidden_size, 128, "model width", x >= 8)                                                         \
  F(int64_t, layers, 4, "decoder layers", x >= 1)                                                             \
  F(int64_t, heads, 4, "attention heads", x >= 1)                                                             \
  F(int64_t, kv_heads, 2, "key/value heads", x >= 1)                                                          \
  F(int64_t, intermediate_size, 384, "MLP width", x >= 8)                                                     \
  F(int64_t, seq_len, 256, "training sequence length (documents packed)", x >= 16)                            \
  F(int64_t, batch, 16, "sequences per step", x >= 1)                                                         \
  F(int64_t, steps, 1500, "optimizer steps", x >= 1)                                                          \
  F(double, lr, 3e-3, "peak learning rate (AdamW, warmup then cosine to 10%)", x > 0)                         \
  F(int64_t, warmup_steps, 100, "linear warmup steps", x >= 0)                                                \
  F(double, weight_decay, 0.1, "AdamW weight decay", x >= 0)                                                  \
  F(int64_t, seed, 1, "seed of the corpus, the problem split and the initial weights", x >= 0)                \
  F(int64_t, threads, 0, "CPU threads (0: all)", x >= 0)
  R1_CONFIG(PretrainOptions, R1_PRETRAIN_FIELDS)
};

struct PretrainSummary {
  double first_loss = 0, last_loss = 0, seconds = 0;
  int64_t tokens = 0;
};

// Random initial weights as transformers initialises a Qwen2/Llama model (normal, std 0.02; o_proj
// and down_proj scaled by 1/sqrt(2 layers); norms 1, biases 0), from `seed`.
void init_weights(CausalLM& model, uint64_t seed);

// Writes the RL/eval problem files, pretrains, and saves the model with the tokenizer.
PretrainSummary pretrain(const PretrainOptions& options, bool progress = true);

}  // namespace r1
