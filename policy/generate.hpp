// Greedy generation with the KV cache over a batch of left-padded prompts: the reference decoder
// for parity tests and `r1 generate --temperature 0`. Sampling lives in rollout/.
#pragma once
#include <string>
#include <vector>

#include "policy/model.hpp"
#include "policy/tokenizer.hpp"

namespace r1 {

struct GreedyOptions {
  int64_t max_new_tokens = 32;
  std::vector<int64_t> stop_ids;  // generation of a row ends after it emits one of these
};

struct Generation {
  std::vector<TokenId> tokens;  // new tokens only, including the stop token if one was emitted
  std::string finish_reason;    // "stop" | "length"
};

std::vector<Generation> greedy_generate(CausalLM& model, const std::vector<std::vector<TokenId>>& prompts,
                                        const GreedyOptions& options);

}  // namespace r1
