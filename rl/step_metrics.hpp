// What one training step logs to metrics.jsonl. Each metric is declared once below, with its
// metrics.jsonl key and how ranks combine it; a phase feeds it with add(). Adding a metric is one
// line here plus the add() where its value is known.
//
//   sum   the total over ranks                      (counts)
//   mean  total / count over ranks                  (per-sample, per-token and per-group means)
//   std   standard deviation over all observations  (reward/std)
//   max   the largest over ranks                    (maxima; timings, where the slowest rank counts)
//   rate  total over ranks / the largest duration   (throughput of the whole job)
//
// A metric no rank fed in a step is left out of that step's line (kl without a reference model,
// kept/* without dynamic sampling).
#pragma once
#include <boost/json/object.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace r1 {

class Distributed;

enum class Reduce { sum, mean, std, max, rate };

struct Stat {
  double sum = 0, sq = 0, n = 0;                                   // reduced by summing over ranks
  double max = -std::numeric_limits<double>::infinity(), den = 0;  // reduced by the maximum

  void add(double x) { sum += x, sq += x * x, n += 1, max = std::max(max, x); }
  void add_total(double total, double count) { sum += total, n += count; }  // a mean over `count` items
  void add_rate(double amount, double seconds) { sum += amount, n += 1, den = std::max(den, seconds); }
  double value(Reduce r) const;
};

#define R1_STEP_METRICS(F)                                                                                    \
  F(reward_mean, "reward/mean", mean, "total reward per completion, over every generated group")              \
  F(reward_std, "reward/std", std, "its standard deviation")                                                  \
  F(accuracy, "accuracy", mean, "share of completions whose accuracy part scored >= 1")                       \
  F(kept_reward_mean, "kept/reward/mean", mean, "reward/mean over the groups dynamic sampling kept")          \
  F(kept_accuracy, "kept/accuracy", mean, "accuracy over the groups dynamic sampling kept")                   \
  F(zero_std_frac, "zero_std_frac", mean, "share of generated groups whose rewards all agree")                \
  F(dropped_groups, "dropped_groups", sum, "groups dynamic sampling dropped")                                 \
  F(length_mean, "length/mean", mean, "completion tokens, over every generated group")                        \
  F(length_max, "length/max", max, "the longest completion")                                                  \
  F(truncated, "truncated", mean, "share of completions cut at max_new_tokens")                               \
  F(kl, "kl", mean, "KL to the reference per trained token (first pass)")                                     \
  F(entropy, "entropy", mean, "policy entropy per trained token (first pass)")                                \
  F(clip_low, "clip/low", mean, "share of tokens clipped below 1 - epsilon_low (first pass)")                 \
  F(clip_high, "clip/high", mean, "share of tokens clipped above 1 + epsilon_high (first pass)")              \
  F(ratio_mean, "ratio/mean", mean, "importance ratio per token (first pass)")                                \
  F(ratio_max, "ratio/max", max, "largest importance ratio (first pass)")                                     \
  F(mismatch_mean, "mismatch/logprob_abs_mean", mean,                                                         \
    "|log-prob(sampler) - log-prob(trainer)| per completion token, before the step's first update")           \
  F(mismatch_max, "mismatch/logprob_abs_max", max, "its largest value")                                       \
  F(tis_weight, "tis/weight_mean", mean, "sampler/trainer correction weight per token (first pass)")          \
  F(tis_clipped, "tis/clipped", mean, "share of tokens whose weight was capped or dropped")                   \
  F(skipped_steps, "guard/skipped_steps", max, "optimizer updates skipped for a non-finite gradient")         \
  F(padding_frac, "train/padding_frac", mean,                                                                 \
    "share of packed completion slots in training forwards that hold no token")                               \
  F(loss, "loss", mean, "the objective, per optimizer update")                                                \
  F(grad_norm, "grad_norm", mean, "global gradient norm before clipping, per optimizer update")               \
  F(lr, "lr", max, "learning rate of the step")                                                               \
  F(gen_tokens_per_s, "tokens_per_s/gen", rate, "generated tokens per second of generation")                  \
  F(train_tokens_per_s, "tokens_per_s/train", rate, "tokens through forward and backward per second")         \
  F(time_rollout, "time/rollout", max, "seconds waiting for the step's groups")                               \
  F(time_generate, "time/generate", max, "seconds generating them, per worker")                               \
  F(time_reward, "time/reward", max, "seconds scoring them")                                                  \
  F(time_train, "time/train", max, "seconds in log-prob passes and updates")                                  \
  F(time_sync, "time/sync", max, "seconds publishing the weights to the workers")                             \
  F(policy_lag, "policy_lag", mean, "weight versions between sampling and training, per group")               \
  F(overlapped_buckets, "dist/overlapped_buckets", mean,                                                      \
    "share of gradient buckets (ZeRO: units) summed over ranks during backward")                              \
  F(mem_weights, "memory/weights_mib", max, "the policy's parameters held between backward passes, per rank") \
  F(mem_masters, "memory/masters_mib", max, "what AdamW steps beside them (float32 masters or ZeRO chunks)")  \
  F(mem_grads, "memory/grads_mib", max, "gradients held between backward passes (the most), per rank")        \
  F(mem_moments, "memory/moments_mib", max, "AdamW's moments, per rank")

struct StepMetrics {
#define R1_STEP_METRIC_MEMBER_(member, key, reduce, doc) Stat member;
  R1_STEP_METRICS(R1_STEP_METRIC_MEMBER_)
#undef R1_STEP_METRIC_MEMBER_
  std::map<std::string, Stat> parts;  // "reward/<part>/mean": each reward part's mean score (mean)

  // Combines every field over the ranks (two collectives); a no-op for one rank.
  void reduce(Distributed& dist);
  // The metrics.jsonl line of step `step`: every fed metric.
  boost::json::object to_json(int64_t step) const;
};

// Every metric's key and doc, for docs and tests.
struct MetricDoc {
  const char* key;
  const char* doc;
};
const std::vector<MetricDoc>& step_metric_docs();

}  // namespace r1
