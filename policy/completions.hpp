// Per-token log-probs of sampled completions under the model, as the trainer scores them: each
// distinct prompt runs once and its completions continue its keys and values
// (CausalLM::hidden_shared), so a GRPO group of G samples costs one prompt, not G. Completions are
// packed back to back into rows as long as the longest of the call (first-fit decreasing,
// preferring a row that already continues the same prompt), so short completions fill the rows
// that long ones leave empty; a row that continues several prompts attends to each of them.
#pragma once
#include <cstdint>
#include <vector>

#include "policy/logprobs.hpp"
#include "policy/model.hpp"
#include "policy/tokenizer.hpp"

namespace r1 {

struct CompletionRef {
  const TokenId* tokens = nullptr;  // prompt then completion
  int64_t prompt_len = 0;           // >= 1
  int64_t completion_len = 0;
  int64_t prompt_key = 0;  // rows with the same key share one prompt run; their prompt tokens must match
};

struct CompletionLogprobs {
  at::Tensor logprobs;  // [B, T] float32, T = longest completion (>= 1); zero past each row's end
  at::Tensor entropy;   // [B, T] float32; undefined unless requested
  int64_t slots = 0;    // continuation slots the forward ran: packed rows x their length
  int64_t tokens = 0;   // the real tokens among them (slots - tokens were padding)
};

// Differentiable w.r.t. the model's parameters. Throws if rows with one key have different prompts.
CompletionLogprobs completion_logprobs(CausalLMImpl& model, const std::vector<CompletionRef>& rows,
                                       const LogprobOptions& options = {});

}  // namespace r1
