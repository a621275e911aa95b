// Batched generation with a preallocated KV cache. Prompts of different lengths share a batch
// (left-padded); the n samples of a prompt share its prefill (the prompt's cache rows are copied n
// times); finished sequences are compacted out of the batch so they stop costing compute.
#pragma once
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "common/config_fields.hpp"
#include "policy/model.hpp"
#include "policy/tokenizer.hpp"
#include "rollout/sampling.hpp"

namespace r1 {

struct GenerationRequest {
  std::vector<TokenId> prompt;
  int64_t n = 1;        // samples of this prompt
  uint64_t stream = 0;  // random-stream id (e.g. the dataset index): sample j draws from (seed, stream, j)
};

enum class FinishReason { stop, length };  // a stop token or string / the max_new_tokens budget
constexpr std::array<const char*, 2> enum_names(FinishReason) { return {"stop", "length"}; }

struct Completion {
  std::vector<TokenId> tokens;  // generated tokens (a final stop token included)
  std::vector<float> logprobs;  // per token, under softmax(logits / temperature)
  std::string text;             // decoded tokens (the stop token id excluded; see include_stop_str)
  FinishReason finish_reason = FinishReason::length;
  int64_t request = 0;  // index into the requests
  int64_t sample = 0;   // 0 .. n-1
};

struct EngineOptions {
  int64_t max_batch = 64;          // sequences decoded together
  double compact_fraction = 0.25;  // compact when this fraction of rows has finished
};

struct EngineStats {
  int64_t prefill_tokens = 0, decode_tokens = 0, decode_steps = 0, compactions = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

class Engine {
 public:
  // `tokenizer` may be null (no text, no stop strings).
  Engine(CausalLM model, const Tokenizer* tokenizer, EngineOptions options = {});

  // Completions in request order, samples in order within a request.
  std::vector<Completion> generate(const std::vector<GenerationRequest>& requests, const SamplingOptions& sampling);

  CausalLM& model() { return model_; }
  const EngineStats& stats() const { return stats_; }

 private:
  void run_batch(const std::vector<GenerationRequest>& requests, size_t first, size_t count,
                 const SamplingOptions& sampling, std::vector<Completion>& out, const std::vector<size_t>& offsets);
  CausalLM model_;
  const Tokenizer* tokenizer_;
  EngineOptions options_;
  EngineStats stats_;
};

}  // namespace r1
