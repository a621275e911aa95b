// Training checkpoints that resume exactly. A checkpoint folder holds the policy in Hugging Face
// format (loadable by transformers, in [train] save_dtype; under LoRA the PEFT adapter folder,
// loadable by PEFT, whose base is the run's model), the AdamW state of what the optimizer updates as pieces each rank
// wrote (optimizer/rank-R-of-W.safetensors, readable at any world size and ZeRO stage), in bf16-mixed the
// float32 masters (masters/), the frozen reference when one is kept, and trainer_state.json (step, weight version,
// records consumed, RNG state), plus MANIFEST.json with every file's size and checksum. It is written into a temp
// folder, fsynced and renamed, so a crash mid-save never damages the last good checkpoint; on resume a checkpoint that
// fails its manifest is reported and the previous good one is used. Weights that hold NaN or inf are never written, so
// rotation never removes the last finite checkpoint.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "policy/model.hpp"
#include "policy/options.hpp"
#include "rl/distributed.hpp"
#include "rl/guard.hpp"
#include "rl/precision.hpp"

namespace torch::optim {
class AdamW;
}

namespace r1 {

struct TrainerState {
  int64_t step = 0;                      // completed training steps
  int64_t version = 0;                   // weight version published after that step
  std::vector<int64_t> records_by_rank;  // dataset records each rank has drawn (data cursors)
  std::string shuffle_rng;               // std::mt19937_64 state of the minibatch shuffler
  int64_t world_size = 1;
  GuardState guard;  // the guardrails' windows and rollbacks (rl/guard.hpp)
};

struct CheckpointSave {
  std::filesystem::path tokenizer_from;  // folder whose tokenizer files are copied
  int64_t keep = 2;                      // checkpoints kept (oldest removed after a good save)
  std::optional<Dtype> dtype;            // of the Hugging Face weights; none: the policy's
};

// Writes run_dir/checkpoints/step-NNNNNN atomically; returns its path.
// Throws r1::Error, writing nothing, when the weights are not all finite.
// Every rank calls it: each writes its pieces of the optimizer state (at ZeRO stage 0 rank 0 holds
// them all), then rank 0 writes the rest while the others wait for it outside the collective
// timeout (Distributed::wait_for); a failure on rank 0 fails every rank with its message.
std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir, CausalLM& policy, TrainWeights& weights,
                                      torch::optim::AdamW& optimizer, const CausalLM* reference,
                                      const TrainerState& state, const CheckpointSave& options, Distributed& dist);

// The trained model as a Hugging Face folder (or PEFT adapters), written by rank 0 while the others
// wait for it; every rank calls it. Under ZeRO with bf16-mixed and a float32 save the masters are
// gathered first (a collective).
void save_final_model(const std::filesystem::path& dir, CausalLM& policy, TrainWeights& weights,
                      const CheckpointSave& options, Distributed& dist);

struct FoundCheckpoint {
  std::filesystem::path dir;
  TrainerState state;
};

// The newest checkpoint of `run_dir` that passes its manifest, and with `at_most` the newest of
// those taken after at most that many steps. Each one skipped is described in `skipped` (what is
// wrong with it), and so is each leftover temp folder of an interrupted save, which is removed.
std::optional<FoundCheckpoint> find_checkpoint(const std::filesystem::path& run_dir, std::vector<std::string>* skipped,
                                               std::optional<int64_t> at_most = std::nullopt);

// Removes the checkpoints of `run_dir` taken after more than `step` steps (a rollback to `step`
// makes them another trajectory's); returns how many.
int64_t remove_checkpoints_after(const std::filesystem::path& run_dir, int64_t step);

// Loads weights (and in bf16-mixed the masters, bit for bit), optimizer state and the reference
// (if given) from a checkpoint folder, whatever the world size and ZeRO stage that wrote it: each
// rank reads the pieces its own layout needs. Under ZeRO every rank calls it (a collective).
void load_checkpoint(const std::filesystem::path& dir, CausalLM& policy, TrainWeights& weights,
                     torch::optim::AdamW& optimizer, CausalLM* reference);

}  // namespace r1
