// The rollout engine: continuous batching over a paged KV cache (policy/paged_kv.hpp). A scheduler
// admits requests as rows and KV blocks free up, so a long tail of completions never holds a
// half-empty batch; prompts are prefilled in chunks within a token budget between decode steps, once
// per prompt, and its n samples share the prompt's blocks; a finished sequence frees its blocks at
// once. Samples come from a counter-based generator keyed by (seed, stream, sample, step), so the
// tokens of a sequence do not depend on the batch it shares, the order requests arrive in, the block
// size or pauses.
//
// One scheduler step (GenerationRun::step) is five phases: admit, prefill, decode, sample, retire.
#pragma once
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "common/config_fields.hpp"
#include "policy/model.hpp"
#include "policy/paged_kv.hpp"
#include "policy/tokenizer.hpp"
#include "rollout/decode_graphs.hpp"
#include "rollout/sampling.hpp"

namespace r1 {

struct GenerationRequest {
  std::vector<TokenId> prompt;
  int64_t n = 1;               // samples of this prompt
  uint64_t stream = 0;         // random-stream id (e.g. the dataset index): sample j draws from (seed, stream, j, step)
  int64_t max_new_tokens = 0;  // this request's budget; 0: the sampling options'
  // Benchmark seam: sample j emits the model's first eos id as its forced_stop[j]-th token (as a
  // logit bias on eos would), so a random-weight model produces a chosen length distribution. Empty: none.
  std::vector<int64_t> forced_stop;
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

// When the scheduler admits new requests.
enum class Schedule {
  continuous,  // whenever rows and KV blocks are free
  drained,     // only once every admitted sequence has finished (static batches; for comparisons)
};
constexpr std::array<const char*, 2> enum_names(Schedule) { return {"continuous", "drained"}; }

struct EngineOptions {
  int64_t max_batch = 64;         // sequences decoded together
  int64_t block_size = 16;        // tokens per KV block
  int64_t kv_blocks = 0;          // KV blocks; 0: enough for max_batch sequences of the longest request
  int64_t prefill_tokens = 2048;  // prompt tokens prefilled per step at most (longer prompts go in chunks)
  Schedule schedule = Schedule::continuous;
  DecodeGraphMode graphs = DecodeGraphMode::off;  // cuda: decode steps as CUDA graphs on a CUDA device
};

// The engine of a rollout worker: [rollout] max_batch, kv_block_size, kv_blocks, prefill_tokens,
// cuda_graphs.
EngineOptions engine_options(const RolloutOptions& o);

struct EngineStats {
  int64_t prefill_tokens = 0, decode_tokens = 0, decode_steps = 0, prefill_calls = 0;
  int64_t graphs_captured = 0;  // CUDA graphs of the decode step recorded (all runs)
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t kv_block_bytes = 0;      // bytes of one block, every layer's keys and values
  int64_t kv_peak_blocks = 0;      // most blocks in use at once
  int64_t kv_capacity_blocks = 0;  // blocks of the pool
};

class GenerationRun;

class Engine {
 public:
  // `tokenizer` may be null (no text, no stop strings).
  Engine(CausalLM model, const Tokenizer* tokenizer, EngineOptions options = {});
  ~Engine();

  // Completions in request order, samples in order within a request.
  std::vector<Completion> generate(const std::vector<GenerationRequest>& requests, const SamplingOptions& sampling);
  // The same, one scheduler step at a time (pause and resume in between).
  GenerationRun start(const std::vector<GenerationRequest>& requests, const SamplingOptions& sampling);

  CausalLM& model() { return model_; }
  const EngineStats& stats() const { return stats_; }
  const EngineOptions& options() const { return options_; }
  int64_t kv_blocks_in_use() const { return cache_ ? cache_->allocator().used() : 0; }

 private:
  friend class GenerationRun;
  PagedKVCache& cache_for(int64_t blocks);
  CausalLM model_;
  const Tokenizer* tokenizer_;
  EngineOptions options_;
  EngineStats stats_;
  std::optional<PagedKVCache> cache_;
};

// One generate() call in progress. Requests are admitted in order; a paused request keeps its KV
// blocks and, resumed, continues exactly where it stopped.
class GenerationRun {
 public:
  GenerationRun(Engine& engine, std::vector<GenerationRequest> requests, SamplingOptions sampling);
  GenerationRun(GenerationRun&&) noexcept;
  ~GenerationRun();  // releases the blocks of whatever has not finished

  bool done() const;
  void step();  // admit, prefill, decode, sample, retire
  void pause(int64_t request);
  void resume(int64_t request);
  std::vector<Completion> take();  // once done()

 private:
  struct State;
  void admit();
  void prefill();
  void decode();
  void retire();
  std::unique_ptr<State> s_;
};

}  // namespace r1
