// The typed options of rollout/: [sampling], [rollout] and [data]. No LibTorch, so configs can be
// read and checked without it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/config_fields.hpp"

namespace r1 {

struct SamplingOptions {
#define R1_SAMPLING_FIELDS(F)                                                                                         \
  F(double, temperature, 1.0, "softmax temperature; 0 = greedy", x >= 0 && x <= 100)                                  \
  F(double, top_p, 1.0, "nucleus sampling: keep the smallest set of tokens with this much probability",               \
    x > 0 && x <= 1)                                                                                                  \
  F(int64_t, top_k, 0, "keep the k most likely tokens (0: all)", x >= 0)                                              \
  F(double, min_p, 0.0, "drop tokens less likely than min_p times the most likely one", x >= 0 && x <= 1)             \
  F(int64_t, max_new_tokens, 256, "tokens generated per completion at most", x >= 1)                                  \
  F(std::vector<std::string>, stop, {}, "stop strings, matched on decoded text (also across token boundaries)", true) \
  F(std::vector<int64_t>, stop_token_ids, {}, "extra stop token ids (the model's eos ids always stop)", true)         \
  F(bool, ignore_eos, false, "do not stop at the model's eos token ids (benchmarks, parity tests)", true)             \
  F(bool, include_stop_str, true, "keep a matched stop string at the end of the returned text", true)                 \
  F(int64_t, seed, 0, "base seed; sample j of prompt i uses its own stream derived from (seed, i, j)", x >= 0)
  R1_CONFIG(SamplingOptions, R1_SAMPLING_FIELDS)
};

struct RolloutOptions {
#define R1_ROLLOUT_FIELDS(F)                                                                                \
  F(int64_t, workers, 1, "rollout worker threads (on GPUs: one per device)", x >= 1 && x <= 64)             \
  F(int64_t, group_size, 8, "completions per prompt (G)", x >= 1 && x <= 1024)                              \
  F(int64_t, prompts_per_step, 8, "prompts per training step", x >= 1)                                      \
  F(int64_t, prompts_per_batch, 8, "prompts a worker generates together", x >= 1)                           \
  F(int64_t, max_batch, 64, "sequences decoded together by one worker", x >= 1)                             \
  F(int64_t, kv_block_size, 16, "tokens per block of the paged KV cache", x >= 1 && x <= 1024)              \
  F(int64_t, kv_blocks, 0,                                                                                  \
    "KV-cache blocks per worker; 0: enough for max_batch sequences of the longest request (on CPU only "    \
    "the blocks in use take memory; on a GPU the pool is allocated whole)",                                 \
    x >= 0)                                                                                                 \
  F(int64_t, prefill_tokens, 2048,                                                                          \
    "prompt tokens prefilled per scheduler step; longer prompts go in chunks between decode steps", x >= 1) \
  F(bool, cuda_graphs, false,                                                                               \
    "on a CUDA device, capture the decode step as CUDA graphs at batch-size buckets (1, 2, 4, 8, then "     \
    "multiples of 8 up to max_batch) and replay them; off by default until a GPU run of "                   \
    "scripts/device-check.sh has checked the capture",                                                      \
    true)                                                                                                   \
  F(int64_t, max_policy_lag, 0,                                                                             \
    "0: on-policy (generate each step with the weights just trained); 1: generate step k+1 while training " \
    "step k, with weights one version old",                                                                 \
    x == 0 || x == 1)                                                                                       \
  F(int64_t, threads, 0,                                                                                    \
    "CPU threads of each worker's ops (0: [model] threads). On a few cores, 1 can be faster for a small "   \
    "model: a worker's OpenMP team and the trainer's would otherwise share the cores and sleep between "    \
    "the many small parallel regions of a decode step",                                                     \
    x >= 0)
  R1_CONFIG(RolloutOptions, R1_ROLLOUT_FIELDS)
};

struct DatasetOptions {
#define R1_DATASET_FIELDS(F)                                                                                 \
  F(std::string, path, "../shared/data/gsm8k/train.jsonl", "JSONL file, one record per line", !x.empty())    \
  F(std::string, prompt_template, "{question}",                                                              \
    "prompt text; {field} is replaced by the record's field, {{ and }} are literal braces", !x.empty())      \
  F(std::vector<std::string>, reference_fields, (std::vector<std::string>{"answer"}),                        \
    "record fields passed to the reward checkers as the reference (e.g. answer, tests, target, nums)", true) \
  F(bool, shuffle, true, "shuffle the records each epoch (seeded)", true)                                    \
  F(int64_t, seed, 0, "shuffling seed", x >= 0)                                                              \
  F(int64_t, limit, 0, "use only the first N records (0: all)", x >= 0)
  R1_CONFIG(DatasetOptions, R1_DATASET_FIELDS)
};

}  // namespace r1
