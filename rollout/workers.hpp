// Rollout workers: N threads (one per GPU on a GPU machine) pull prompts from the dataset,
// generate G completions per prompt with their own copy of the policy, and hand each group to the
// reward stage, which runs on its own thread so the next generation overlaps with scoring. Scored
// groups wait in a bounded queue for the trainer, which takes them step by step in dataset order.
//
// Weights: before each batch a worker installs the newest published snapshot (checksum-verified,
// see weights.hpp). Groups of step k use a policy version >= k - max_policy_lag, so lag 0 is
// on-policy GRPO and lag 1 overlaps generation of step k+1 with training on step k.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "rollout/options.hpp"
#include "rollout/dataset.hpp"
#include "rollout/engine.hpp"
#include "rollout/weights.hpp"

namespace r1 {


struct ScoredGroup {
  int64_t sequence = 0;        // global order: group i belongs to step i / prompts_per_step
  int64_t worker = 0;
  int64_t policy_version = 0;  // the weights every completion of this group was sampled from
  PromptRecord prompt;
  std::vector<TokenId> prompt_ids;
  std::vector<Completion> completions;  // G of them
  // Filled by the reward stage, one entry per completion.
  std::vector<double> rewards;
  std::vector<std::vector<std::pair<std::string, double>>> reward_parts;
  std::vector<std::string> reward_reasons;
  double generate_seconds = 0, reward_seconds = 0;
};

// Scores a group in place (rewards, parts, reasons). Runs on the reward thread.
using RewardStage = std::function<void(ScoredGroup&)>;

class RolloutPool {
 public:
  struct Parts {
    std::function<CausalLM(int64_t worker)> make_model;  // each worker's own policy copy
    const Tokenizer* tokenizer = nullptr;
    std::shared_ptr<Dataset> dataset;
    std::shared_ptr<WeightStore> weights;  // at least one snapshot published before start(); then use publish()
    RewardStage reward;
  };
  RolloutPool(RolloutOptions options, SamplingOptions sampling, Parts parts);
  ~RolloutPool();  // stops and joins

  void start();
  void stop();
  // Publishes the trainer's weights as `version` and wakes workers waiting for fresh weights.
  uint64_t publish(torch::nn::Module& trainer_model, int64_t version);
  // The prompts_per_step groups of `step`, in sequence order. Blocks; rethrows a worker's error.
  std::vector<ScoredGroup> take_step(int64_t step);
  EngineStats engine_stats() const;

 private:
  void worker_loop(int64_t w);
  void reward_loop();
  void fail_all(std::exception_ptr e);

  RolloutOptions options_;
  SamplingOptions sampling_;
  Parts parts_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<Engine>> engines_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::exception_ptr error_;
  int64_t next_sequence_ = 0;             // groups handed out to workers
  std::deque<ScoredGroup> to_score_;      // generated, waiting for rewards
  std::map<int64_t, ScoredGroup> ready_;  // scored, by sequence
};

}  // namespace r1
