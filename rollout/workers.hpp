// Rollout workers: N threads (one per GPU on a GPU machine) pull prompts from the dataset,
// generate G completions per prompt with their own copy of the policy, and hand each group to the
// reward stage, which runs on its own thread so the next generation overlaps with scoring.
//
// The trainer asks for groups with request(n); each request is pinned to the weight version
// current when it was made, so which weights sample which prompt does not depend on timing: the
// run is reproducible whatever the number of workers. take(n) returns the next n scored groups in
// request order. Before each batch a worker installs the pinned snapshot (checksum-verified, see
// weights.hpp); every group records the version that generated it.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "rollout/dataset.hpp"
#include "rollout/engine.hpp"
#include "rollout/options.hpp"
#include "rollout/weights.hpp"

namespace r1 {

struct ScoredGroup {
  int64_t sequence = 0;  // position in request order
  int64_t worker = 0;
  int64_t policy_version = 0;  // the weights every completion of this group was sampled from
  PromptRecord prompt;
  std::vector<TokenId> prompt_ids;
  std::vector<Completion> completions;  // G of them
  // Filled by the reward stage, one entry per completion.
  std::vector<double> rewards;
  std::vector<std::vector<std::pair<std::string, double>>> reward_parts;
  std::vector<std::string> reward_reasons;
  std::vector<bool> correct;  // by the run's one definition of a correct completion
  double generate_seconds = 0, reward_seconds = 0;
};

// Scores a group in place (rewards, parts, reasons). Runs on the reward thread.
using RewardStage = std::function<void(ScoredGroup&)>;

class RolloutPool {
 public:
  struct Parts {
    std::function<CausalLM(int64_t worker)> make_model;  // each worker's own policy (weights come by sync)
    // make_model returns one module for every worker, which the caller keeps at the newest
    // published version: no per-worker copy, no host snapshots, nothing to install. It is the
    // trainer's own module (max_policy_lag = 0, where the trainer never updates while workers
    // generate), or one sampler copy that the trainer updates in place between versions, after
    // wait_generated() (max_policy_lag = 1).
    bool shared_model = false;
    const Tokenizer* tokenizer = nullptr;
    std::shared_ptr<Dataset> dataset;
    std::shared_ptr<WeightStore> weights;
    RewardStage reward;
    // Sampling stream of group `sequence`: sequence * stride + offset. Data parallel ranks use
    // (world size, rank), so group i of rank r draws the stream of global position i * world + r.
    int64_t stream_stride = 1, stream_offset = 0;
    // CPU threads of each worker's ops (0: LibTorch's default). OpenMP's thread count is per
    // thread, so a worker does not inherit the trainer's at::set_num_threads.
    int64_t threads = 0;
  };
  RolloutPool(RolloutOptions options, SamplingOptions sampling, Parts parts);
  ~RolloutPool();  // stops and joins

  // Before start(): continue the sequence numbering (and so the random streams) of an earlier run
  // that had taken `sequence` groups (exact resume).
  void start_at(int64_t sequence);
  void start();
  void stop();
  // Publishes the trainer's weights as `version`; later requests sample from them.
  uint64_t publish(torch::nn::Module& trainer_model, int64_t version);
  // Asks for `groups` more groups, sampled with the newest published weights.
  void request(int64_t groups);
  // Blocks until every requested group has been generated (rewards may still be scoring), so no
  // worker reads its model until the next request; rethrows a worker's error.
  void wait_generated();
  // The next `n` scored groups in request order. Blocks; rethrows a worker's or the reward stage's error.
  std::vector<ScoredGroup> take(int64_t n);
  int64_t pending() const;  // requested but not yet taken
  EngineStats engine_stats() const;

 private:
  struct Ticket {
    int64_t end;      // sequences below this belong to this or earlier tickets
    int64_t version;  // weights pinned at request time
  };
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
  std::deque<Ticket> tickets_;
  int64_t requested_ = 0;                 // sequences requested so far
  int64_t next_sequence_ = 0;             // sequences handed to workers
  int64_t generating_ = 0;                // batches handed to workers and not yet generated
  int64_t taken_ = 0;                     // sequences returned by take()
  std::deque<ScoredGroup> to_score_;      // generated, waiting for rewards
  std::map<int64_t, ScoredGroup> ready_;  // scored, by sequence
};

}  // namespace r1
