#include "rl/trainer.hpp"

#include <boost/json.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <sstream>

#include "common/config.hpp"
#include "common/error.hpp"
#include "common/fs.hpp"
#include "common/memory.hpp"
#include "common/test_seam.hpp"
#include "metrics/run_log.hpp"
#include "policy/checkpoint.hpp"
#include "policy/device.hpp"
#include "policy/lora.hpp"
#include "rewards/backend.hpp"
#include "rl/adamw.hpp"
#include "rl/batch.hpp"
#include "rl/checkpoint.hpp"
#include "rl/eval.hpp"
#include "rl/guard.hpp"
#include "rl/precision.hpp"
#include "rl/progress.hpp"
#include "rl/resume.hpp"
#include "rl/reward_lint.hpp"
#include "rl/run_checks.hpp"
#include "rl/step_metrics.hpp"
#include "rl/update.hpp"
#include "rollout/workers.hpp"

namespace fs = std::filesystem;

namespace r1 {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A frozen copy of the model (no gradients, eval mode).
CausalLM frozen(const PolicyOptions& o) {
  CausalLM m = load_pretrained(o);
  m->eval();
  for (auto& p : m->parameters()) p.set_requires_grad(false);
  return m;
}

std::vector<PromptRecord> eval_records(const RunConfig& cfg) {
  std::vector<PromptRecord> out;
  if (cfg.eval.path.empty()) return out;
  DatasetOptions eo = cfg.data;  // the same template and reference fields
  eo.path = cfg.eval.path;
  eo.limit = cfg.eval.limit;
  eo.shuffle = false;
  Dataset ed(eo);
  for (size_t i = 0; i < ed.size(); ++i) out.push_back(ed.at(i));
  return out;
}

void add_eval(boost::json::object& line, const EvalScore& e) {
  line["eval/accuracy"] = e.accuracy;
  line["eval/length"] = e.mean_length;
  line["eval/prompts_per_rank"] = e.prompts_per_rank;
  for (const auto& [name, v] : e.parts) line["eval/reward/" + name + "/mean"] = v;
}

// The trainer: its components, built in order in the constructor, and the phases of a step.
class Trainer {
 public:
  Trainer(const RunConfig& cfg, const TrainerSetup& setup);
  TrainSummary run();

 private:
  // Phases of a step.
  StepGroups collect(StepMetrics& m);
  void score_old_and_reference(std::vector<Sequence>& seqs, StepMetrics& m);
  double update(const std::vector<Sequence>& seqs, int64_t step, StepMetrics& m);
  void publish(int64_t step, StepMetrics& m);
  void log_memory(StepMetrics& m);
  boost::json::object log_step(int64_t step, StepMetrics& m, const StepGroups& g, const std::vector<Sequence>& seqs);
  void evaluate_if_due(int64_t step, boost::json::object& line);
  std::vector<GuardFiring> watch(int64_t step, boost::json::object& line);
  void checkpoint_if_due(int64_t step);
  fs::path save(int64_t step);
  // What a guard firing does: the step to run next.
  int64_t act_on(int64_t step, const std::vector<GuardFiring>& fired);
  std::optional<int64_t> roll_back(int64_t step, const std::vector<GuardFiring>& fired, std::string* why);
  [[noreturn]] void stop_run(int64_t step, const std::string& why);
  // Set-up and the ends of the run.
  void open_run_dir();
  void restore(const ResumePoint& p);
  void restore_state(const ResumePoint& p);
  std::unique_ptr<RolloutPool> make_pool();
  void start();
  void start_rollouts();
  TrainSummary finish();
  EvalScore evaluate_heldout();
  CausalLM& weights_of(int64_t version);
  CausalLM compute_copy();
  void sync_sampler();
  bool last(int64_t step) const { return step + 1 == cfg_.train.steps; }

  const RunConfig cfg_;    // on this rank's device
  const RunConfig given_;  // as written to the run's config.toml
  const TrainerSetup setup_;
  const int64_t rank_, world_, per_step_;  // per_step_: this rank's share of prompts_per_step
  const Clock::time_point t_start_ = Clock::now();
  fs::path run_dir_;
  std::optional<ResumePoint> resume_;
  CausalLM policy_;
  std::unique_ptr<TrainWeights> weights_;   // what AdamW updates: the policy, or its float32 masters
  std::optional<Dtype> save_dtype_;         // of saved weights; none: the policy's
  SkipGuard skips_;                         // optimizer steps skipped for a non-finite gradient norm
  Guard guard_;                             // the [guard] rules over each step's metrics
  std::optional<CausalLM> ref_, behavior_;  // the frozen reference; older weights for recomputed log-probs
  // What every rollout worker samples from: the policy itself (max_policy_lag = 0), or one copy
  // updated in place between versions (lag 1); and the versions the copies hold.
  CausalLM sampler_{nullptr};
  int64_t sampler_version_ = 0, behavior_version_ = -1;
  Tokenizer tok_;
  std::unique_ptr<rewards::RewardBackend> rewards_;
  std::shared_ptr<Dataset> dataset_;
  std::vector<PromptRecord> eval_prompts_;
  Distributed dist_;
  std::shared_ptr<WeightStore> store_;
  std::unique_ptr<RolloutPool> pool_;
  std::unique_ptr<ChunkedAdamW> opt_;
  std::optional<metrics::RunLog> log_;
  ProgressLine progress_;
  TrainSummary summary_;
  int64_t first_step_ = 0, version_ = 0, consumed_ = 0;  // consumed_: dataset records this rank drew
  int64_t saved_step_ = -1;                              // the step of the newest checkpoint written
  fs::path saved_dir_;
  std::mt19937_64 shuffle_rng_;
};

// The policy: the checkpoint, with fresh LoRA adapters attached when [lora] rank > 0 (their
// float32 initial values in `*lora_init`).
CausalLM load_policy(const RunConfig& cfg, const Tokenizer& tok, NamedTensors* lora_init) {
  CausalLM policy = load_pretrained(cfg.model);
  policy->ban_ids_without_token(tok);  // as the workers' engines do: trainer and sampler agree
  if (cfg.lora.enabled()) {
    *lora_init = init_lora(policy, cfg.lora, static_cast<uint64_t>(cfg.run.seed));
    add_lora(policy, cfg.lora, *lora_init);
  }
  policy->train();
  if (cfg.train.activation_checkpointing == ActivationCheckpointing::layers)
    policy->set_activation_checkpointing(cfg.train.checkpoint_every);  // training forwards only
  return policy;
}

// What AdamW updates: the trained parameters (all, or the adapters), in bf16-mixed as float32
// masters: the checkpoint loaded in float32 (exact even for a float32 checkpoint), or the adapters'
// float32 initial values.
std::unique_ptr<TrainWeights> make_train_weights(const RunConfig& cfg, CausalLM& policy, const NamedTensors& lora_init,
                                                 Distributed& dist) {
  NamedTensors masters;
  if (cfg.train.precision == Precision::bf16_mixed && has_lora(policy)) {
    masters = lora_init;
  } else if (cfg.train.precision == Precision::bf16_mixed) {
    CausalLM full = load_pretrained(cfg.model.model_dir(), policy->options().dtype(at::kFloat));
    masters = named_tensors(full);  // the tensors outlive the module
  }
  return std::make_unique<TrainWeights>(policy, cfg.train.precision, masters,
                                        Sharding{.dist = &dist, .zero_stage = cfg.distributed.zero_stage});
}

// `cfg` after every check, before anything is made from it, on this rank's device (bind_device).
RunConfig checked(const RunConfig& cfg, const LaunchEnv& launch) {
  check_run_config(cfg);
  if (cfg.rollout.prompts_per_step % launch.world_size != 0)
    throw ConfigError(fmt::format("rollout.prompts_per_step = {} is the global batch and must divide by the {} ranks",
                                  cfg.rollout.prompts_per_step, launch.world_size));
  RunConfig c = cfg;
  c.model.device = bind_device(cfg.model.device, launch);
  return c;
}

Trainer::Trainer(const RunConfig& cfg, const TrainerSetup& setup)
    : cfg_(checked(cfg, setup.launch)),
      given_(cfg),
      setup_(setup),
      rank_(setup.launch.rank),
      world_(setup.launch.world_size),
      per_step_(cfg.rollout.prompts_per_step / setup.launch.world_size),
      run_dir_(setup.run_dir.empty() ? fs::path(cfg.run.out_dir) / cfg.run.name : setup.run_dir),
      policy_(nullptr),
      guard_(cfg.guard, cfg.sampling.max_new_tokens),
      tok_(Tokenizer::load(cfg.model.model_dir() / "tokenizer.json")),
      dist_(setup.launch, cfg_.distributed, tensor_options(cfg_.model.dtype, cfg_.model.device).device()),
      progress_(cfg.train.steps, setup.progress && setup.launch.rank == 0),
      shuffle_rng_(fresh_shuffle_rng(static_cast<uint64_t>(cfg.run.seed))) {
  at::manual_seed(static_cast<uint64_t>(cfg_.run.seed));
  // Pinned even at LibTorch's default count: workers pin theirs later and must not leak into this thread.
  pin_cpu_threads(cfg_.model.threads > 0 ? static_cast<int>(cfg_.model.threads) : at::get_num_threads());
  NamedTensors lora_init;
  policy_ = load_policy(cfg_, tok_, &lora_init);
  weights_ = make_train_weights(cfg_, policy_, lora_init, dist_);
  save_dtype_ = saved_dtype(cfg_.train.save_dtype, policy_->config().dtype);
  if (cfg_.grpo.kl_coef > 0 && !has_lora(policy_)) {  // with LoRA the reference is the policy without adapters
    ref_ = frozen(cfg_.model);
    (*ref_)->ban_ids_without_token(tok_);
  }
  rewards_ = rewards::make_reward_backend(cfg_.rewards, rewards::sandbox_from(cfg_.sandbox));
  apply_reward_lint(cfg_, *rewards_, /*quiet=*/rank_ != 0 || !setup_.progress);  // before anything is generated
  dataset_ = std::make_shared<Dataset>(cfg_.data, rank_, world_);
  eval_prompts_ = eval_records(cfg_);
  sampler_ = cfg_.rollout.max_policy_lag == 0 ? policy_ : compute_copy();
  pool_ = make_pool();
  const TrainOptions& t = cfg_.train;
  opt_ = std::make_unique<ChunkedAdamW>(weights_->params(), torch::optim::AdamWOptions(t.lr)
                                                                .betas({t.adam_beta1, t.adam_beta2})
                                                                .eps(t.adam_eps)
                                                                .weight_decay(t.weight_decay));
  if (setup_.resume)
    resume_ = plan_resume(run_dir_, rank_, world_, static_cast<int64_t>(dataset_->size()),
                          static_cast<uint64_t>(cfg_.run.seed));
  open_run_dir();  // the first thing written: every input above was good
  if (resume_) restore(*resume_);
}

// The rollout workers over a fresh weight store (versions only: the workers share one module).
std::unique_ptr<RolloutPool> Trainer::make_pool() {
  store_ = std::make_shared<WeightStore>(2);
  return std::make_unique<RolloutPool>(
      cfg_.rollout, cfg_.sampling,
      RolloutPool::Parts{.make_model = [this](int64_t) { return sampler_; },
                         .shared_model = true,
                         .tokenizer = &tok_,
                         .dataset = dataset_,
                         .weights = store_,
                         .reward = make_reward_stage(*rewards_, cfg_.accuracy_part()),
                         .stream_stride = world_,
                         .stream_offset = rank_,
                         .threads = cfg_.rollout.threads > 0 ? cfg_.rollout.threads : cfg_.model.threads});
}

void Trainer::open_run_dir() {
  if (rank_ != 0) return;
  fs::create_directories(run_dir_);
  if (!setup_.resume) write_file_atomic(run_dir_ / "config.toml", cfg::to_toml(given_));
  log_.emplace(run_dir_, metrics::RunLogOptions{.tensorboard = cfg_.run.tensorboard});
  if (!setup_.resume) log_->log_config(cfg::to_toml(given_));  // step 0: a resumed run's would go back in time
}

// A checkpoint's weights, optimizer state, data cursor, shuffler and guard state.
void Trainer::restore_state(const ResumePoint& p) {
  load_checkpoint(p.checkpoint.dir, policy_, *weights_, *opt_, ref_ ? &*ref_ : nullptr);
  first_step_ = saved_step_ = p.checkpoint.state.step;
  saved_dir_ = p.checkpoint.dir;
  version_ = p.checkpoint.state.version;
  consumed_ = p.consumed;
  shuffle_rng_ = p.shuffle_rng;
  dataset_->set_cursor(dataset_->cursor_after(consumed_));
  guard_.restore(p.checkpoint.state.guard);
}

void Trainer::restore(const ResumePoint& p) {
  restore_state(p);
  if (log_) log_->truncate_after(first_step_);
  fmt::print(stderr, "r1 train: resuming {} from {} (step {})\n", run_dir_.string(), p.checkpoint.dir.string(),
             first_step_);
}

// Before the first step: the same weights on every rank, the held-out eval of the base model, the
// first weights to the workers, and the first step's groups requested.
void Trainer::start() {
  weights_->start();  // every rank's compute weights the same, gradient hooks on
  if (!setup_.resume && !eval_prompts_.empty()) {
    summary_.before = evaluate_heldout();
    if (log_) {
      boost::json::object line{{"step", 0}};
      add_eval(line, summary_.before);
      log_->log_step(line);
      fmt::print(stderr, "r1 train: before RL: eval accuracy {:.3f}, format {:.3f} on {} held-out prompts\n",
                 summary_.before.accuracy, summary_.before.part("format"), eval_prompts_.size());
    }
  }
  start_rollouts();
}

// The current weights to the workers, which start drawing at the data cursor, and the next step's
// groups requested.
void Trainer::start_rollouts() {
  if (sampler_.ptr() != policy_.ptr()) copy_weights(*sampler_, *policy_);
  sampler_version_ = version_;
  pool_->publish(*policy_, version_);
  pool_->start_at(consumed_);
  pool_->start();
  pool_->request(per_step_);
}

TrainSummary Trainer::run() {
  start();
  for (int64_t step = first_step_; step < cfg_.train.steps;) {
    const auto t_step = Clock::now();
    StepMetrics m;
    if (cfg_.rollout.max_policy_lag >= 1 && !last(step)) pool_->request(per_step_);  // overlaps this step
    StepGroups groups = collect(m);                                                  // 1. rollouts and rewards
    std::vector<Sequence> seqs = make_sequences(groups.kept, cfg_.grpo);             // 2. advantages
    const auto t_train = Clock::now();
    score_old_and_reference(seqs, m);             // 3. old and reference log-probs
    const double tokens = update(seqs, step, m);  // 4. policy update
    const double t = since(t_train);
    m.time_train.add(t);
    m.train_tokens_per_s.add_rate(tokens, t);
    publish(step, m);                                            // 5. weights to the workers
    boost::json::object line = log_step(step, m, groups, seqs);  // 6. metrics and samples
    evaluate_if_due(step, line);                                 // 7. held-out eval
    const std::vector<GuardFiring> fired = watch(step, line);    // 8. guardrails
    if (log_) log_->log_step(line);
    if (!fired.empty() && strongest(fired) == GuardAction::rollback) {
      step = act_on(step, fired);  // 9. a rollback: the step after the restored checkpoint is next
      continue;
    }
    checkpoint_if_due(step);  // 9. checkpoint (and a guard's stop)
    if (!fired.empty()) act_on(step, fired);
    release_freed_memory();  // what this step freed goes back to the OS (common/memory.hpp)
    progress_.step(step + 1, line, since(t_step));
    test_seam::crash_point(test_seam::Point::after_step, step + 1, rank_);
    ++step;
  }
  return finish();
}

StepGroups Trainer::collect(StepMetrics& m) {
  const auto t0 = Clock::now();
  StepGroups g = collect_groups(groups_of(*pool_), per_step_, cfg_.grpo, version_, m);
  consumed_ += g.generated;
  const double t_rollout = since(t0);
  const double workers = static_cast<double>(cfg_.rollout.workers);
  // Generation speed over the time spent generating: the wait in take() alone is ~0 when the
  // rollout already ran during the previous step (max_policy_lag = 1).
  m.time_rollout.add(t_rollout);
  m.time_generate.add(g.generate_seconds / workers);
  m.time_reward.add(g.reward_seconds);
  m.gen_tokens_per_s.add_rate(g.tokens, std::max(t_rollout, g.generate_seconds / workers));
  release_freed_memory();  // the workers' KV caches, before the update allocates its activations
  return g;
}

// max_policy_lag = 1: the sampler takes the new version in place once the groups it is sampling
// are generated (the next step's collect waits for those anyway). With recomputed old log-probs the
// behaviour copy first takes the version the sampler held: the weights that sampled those groups.
void Trainer::sync_sampler() {
  pool_->wait_generated();
  if (cfg_.train.old_logprobs == OldLogprobs::recompute) {
    if (!behavior_) {
      behavior_ = compute_copy();
      (*behavior_)->ban_ids_without_token(tok_);
      (*behavior_)->eval();
    }
    copy_weights(**behavior_, *sampler_);
    behavior_version_ = sampler_version_;
  }
  copy_weights(*sampler_, *policy_);
  sampler_version_ = version_;
}

// A second model to hold older weights: a full copy, or under LoRA its own adapters over the
// policy's shared base. Its values come by copy_weights.
CausalLM Trainer::compute_copy() {
  if (has_lora(policy_)) return adapter_replica(policy_);
  return CausalLM(policy_->config(), policy_->options());
}

// The weights that sampled `version`: the policy itself, or the behaviour copy (max_policy_lag = 1).
CausalLM& Trainer::weights_of(int64_t version) {
  if (version == version_) return policy_;
  R1_CHECK(behavior_ && behavior_version_ == version,
           "old log-probs: the weights of version {} are not kept (the "
           "behaviour copy holds version {})",
           version, behavior_version_);
  return *behavior_;
}

void Trainer::score_old_and_reference(std::vector<Sequence>& seqs, StepMetrics& m) {
  const double temp = cfg_.sampling.temperature;
  const int64_t micro = cfg_.train.micro_batch;
  if (cfg_.train.old_logprobs == OldLogprobs::recompute) {
    std::map<int64_t, std::vector<Sequence*>> by_version;  // recomputed with the weights that sampled them
    for (auto& s : seqs) by_version[s.policy_version].push_back(&s);
    for (auto& [version, part] : by_version) score_logprobs(weights_of(version), part, temp, micro, LogprobSlot::old);
    for (const auto& s : seqs)  // the same weights on both sides: any gap is numerics
      for (int64_t t = 0; t < s.comp_len; ++t) {
        const double gap = std::abs(static_cast<double>(s.sampler_logprobs[t]) - s.old_logprobs[t]);
        m.mismatch_mean.add(gap);
        m.mismatch_max.add(gap);
      }
  }
  if (cfg_.grpo.kl_coef > 0) {
    std::vector<Sequence*> all;
    for (auto& s : seqs) all.push_back(&s);
    if (ref_) {
      score_logprobs(*ref_, all, temp, micro, LogprobSlot::ref);
    } else {  // LoRA: the base model is the policy with its adapters off
      LoraDisabled base(policy_);
      score_logprobs(policy_, all, temp, micro, LogprobSlot::ref);
    }
  }
}

// Returns the tokens that went through forward and backward.
double Trainer::update(const std::vector<Sequence>& seqs, int64_t step, StepMetrics& m) {
  const auto [early_before, launched_before] = weights_->overlap();
  double lr = lr_at(cfg_.train, step) * guard_.state().lr_scale;  // the scale: product of rollbacks' factors
  if (test_seam::fault_point(test_seam::Fault::lr_spike, step + 1, rank_)) lr *= 1000;
  m.lr.add(lr);
  const double tokens = PolicyUpdate(policy_, *weights_, *opt_, dist_, skips_,
                                     {.grpo = cfg_.grpo,
                                      .train = cfg_.train,
                                      .temperature = cfg_.sampling.temperature,
                                      .max_new_tokens = cfg_.sampling.max_new_tokens,
                                      .old_is_sampler = cfg_.train.old_logprobs == OldLogprobs::rollout,
                                      .step = step,
                                      .rank = rank_})
                            .run(seqs, version_, lr, shuffle_rng_, m);
  if (dist_.active()) {  // the share of gradient buckets whose sum over ranks overlapped backward
    const auto [early, launched] = weights_->overlap();
    if (launched > launched_before)
      m.overlapped_buckets.add_total(static_cast<double>(early - early_before),
                                     static_cast<double>(launched - launched_before));
  }
  log_memory(m);
  return tokens;
}

// What this rank holds of the trained state (weights and gradients are measured inside the update).
void Trainer::log_memory(StepMetrics& m) {
  constexpr double MiB = 1024.0 * 1024.0;
  double moments = 0;
  for (const auto& [key, st] : opt_->state()) {
    const auto& a = static_cast<const torch::optim::AdamWParamState&>(*st);
    moments += static_cast<double>(a.exp_avg().nbytes() + a.exp_avg_sq().nbytes());
  }
  m.mem_masters.add(weights_->master_bytes() / MiB);
  m.mem_moments.add(moments / MiB);
}

void Trainer::publish(int64_t step, StepMetrics& m) {
  const auto t0 = Clock::now();
  ++version_;
  if (cfg_.rollout.max_policy_lag >= 1) sync_sampler();
  pool_->publish(*policy_, version_);
  if (cfg_.rollout.max_policy_lag == 0 && !last(step)) pool_->request(per_step_);
  m.time_sync.add(since(t0));
  if (cfg_.distributed.checksum_every > 0 && (step + 1) % cfg_.distributed.checksum_every == 0)
    dist_.check_same(weights_checksum(*policy_), fmt::format("the weight checksum after step {}", step + 1));
}

boost::json::object Trainer::log_step(int64_t step, StepMetrics& m, const StepGroups& g,
                                      const std::vector<Sequence>& seqs) {
  m.reduce(dist_);
  if (log_ && cfg_.train.log_samples_every > 0 && step % cfg_.train.log_samples_every == 0)
    log_->log_samples(step + 1, sample_lines(g.kept, seqs));
  return m.to_json(step + 1);
}

void Trainer::evaluate_if_due(int64_t step, boost::json::object& line) {
  if (eval_prompts_.empty()) return;
  if (!last(step) && !(cfg_.eval.every > 0 && (step + 1) % cfg_.eval.every == 0)) return;
  EvalScore e = evaluate_heldout();
  add_eval(line, e);
  if (last(step)) summary_.after = e;
}

// The guard rules over the step's line: each firing is named in the line ("guard/<rule>": action),
// in events.jsonl and on stderr.
std::vector<GuardFiring> Trainer::watch(int64_t step, boost::json::object& line) {
  std::vector<GuardFiring> fired = guard_.observe(step + 1, line);
  for (const auto& f : fired) {
    line["guard/" + f.rule] = cfg::name_of(f.action);
    if (log_) log_->log_event(f.to_json());
    if (rank_ == 0)  // on its own line, below the live progress line
      fmt::print(stderr, "{}r1 train: guard {} at step {}: {}\n", setup_.progress ? "\n" : "", cfg::name_of(f.action),
                 step + 1, f.message);
  }
  return fired;
}

// A stop or a rollback among `fired` (warnings are already out); returns the step to run next.
int64_t Trainer::act_on(int64_t step, const std::vector<GuardFiring>& fired) {
  const GuardAction a = *strongest(fired);
  std::string why;
  for (const auto& f : fired)
    if (f.action == a) why += (why.empty() ? "" : "; ") + f.message;
  if (a == GuardAction::rollback) {
    std::string cannot;
    if (auto next = roll_back(step, fired, &cannot)) return *next;
    stop_run(step, why + "; no rollback: " + cannot);
  }
  if (a == GuardAction::stop) stop_run(step, why);
  return step + 1;
}

// Restores, in place, the newest checkpoint taken before the earliest rollback condition started;
// returns the step to run next, or nullopt with `why` when the run cannot roll back. A step's
// guarded metrics (its samples and first-pass values) measure the weights of the step before, so a
// condition first seen at logged step c is in the weights after c - 1 steps: the checkpoint is one
// taken after at most c - 2.
std::optional<int64_t> Trainer::roll_back(int64_t step, const std::vector<GuardFiring>& fired, std::string* why) {
  int64_t since = step + 1;
  for (const auto& f : fired)
    if (f.action == GuardAction::rollback) since = std::min(since, f.since);
  if (guard_.state().rollbacks >= cfg_.guard.max_rollbacks) {
    *why = fmt::format("{} rollback(s) taken, [guard] max_rollbacks = {}", guard_.state().rollbacks,
                       cfg_.guard.max_rollbacks);
    return std::nullopt;
  }
  std::optional<ResumePoint> p;
  try {
    p = plan_resume(run_dir_, rank_, world_, static_cast<int64_t>(dataset_->size()),
                    static_cast<uint64_t>(cfg_.run.seed), since - 2);
  } catch (const Error& e) {
    *why = e.what();
    return std::nullopt;
  }
  const int64_t drawn = consumed_;
  const GuardState carried = guard_.state();
  pool_->stop();  // the groups in flight came from the abandoned weights
  restore_state(*p);
  if (cfg_.guard.rollback_skip_data) consumed_ = drawn, dataset_->set_cursor(dataset_->cursor_after(consumed_));
  GuardState g = guard_.state();
  g.rollbacks = carried.rollbacks, g.lr_scale = carried.lr_scale;
  guard_.restore(g);
  guard_.count_rollback();
  skips_ = {};
  behavior_version_ = -1;
  const int64_t removed = rank_ == 0 ? remove_checkpoints_after(run_dir_, first_step_) : 0;
  if (log_)
    log_->log_event({{"step", step + 1},
                     {"event", "rollback"},
                     {"restored_step", first_step_},
                     {"checkpoint", p->checkpoint.dir.string()},
                     {"rollbacks", guard_.state().rollbacks},
                     {"lr_scale", guard_.state().lr_scale},
                     {"skipped_records", cfg_.guard.rollback_skip_data ? drawn - p->consumed : 0},
                     {"removed_checkpoints", removed}});
  if (rank_ == 0)
    fmt::print(stderr, "r1 train: rolled back to step {} ({}); lr scale {:.4g}, rollback {} of {}\n", first_step_,
               p->checkpoint.dir.string(), guard_.state().lr_scale, guard_.state().rollbacks, cfg_.guard.max_rollbacks);
  pool_ = make_pool();
  start_rollouts();
  release_freed_memory();
  return first_step_;
}

// A clean stop after step `step`, with its checkpoint.
void Trainer::stop_run(int64_t step, const std::string& why) {
  pool_->stop();
  const fs::path ckpt = save(step);
  if (log_) {
    log_->log_event({{"step", step + 1}, {"event", "stop"}, {"checkpoint", ckpt.string()}, {"message", why}});
    log_->sync();
  }
  throw GuardStop(
      fmt::format("training stopped after step {} by the guard: {}. Checkpoint: {} (r1 train --resume {} "
                  "continues from it)",
                  step + 1, why, ckpt.string(), run_dir_.string()));
}

void Trainer::checkpoint_if_due(int64_t step) {
  if (!last(step) && !(cfg_.train.save_every > 0 && (step + 1) % cfg_.train.save_every == 0)) return;
  save(step);
}

// The checkpoint after step `step`, written once.
fs::path Trainer::save(int64_t step) {
  if (saved_step_ == step + 1) return saved_dir_;
  std::vector<double> drawn(static_cast<size_t>(world_), 0.0);  // every rank takes part
  drawn[static_cast<size_t>(rank_)] = static_cast<double>(consumed_);
  std::vector<int64_t> by_rank;
  for (double x : dist_.sum(drawn)) by_rank.push_back(static_cast<int64_t>(x));
  std::ostringstream rng_state;
  rng_state << shuffle_rng_;
  if (log_) log_->sync();
  saved_dir_ = save_checkpoint(
      run_dir_, policy_, *weights_, *opt_, ref_ ? &*ref_ : nullptr,
      {step + 1, version_, by_rank, rng_state.str(), world_, guard_.state()},
      {.tokenizer_from = cfg_.model.model_dir(), .keep = cfg_.train.keep_checkpoints, .dtype = save_dtype_}, dist_);
  saved_step_ = step + 1;
  return saved_dir_;
}

TrainSummary Trainer::finish() {
  pool_->stop();
  summary_.run_dir = run_dir_;
  summary_.model_dir = run_dir_ / "model";
  save_final_model(summary_.model_dir, policy_, *weights_,
                   {.tokenizer_from = cfg_.model.model_dir(), .dtype = save_dtype_}, dist_);
  if (log_) log_->sync();
  summary_.steps = cfg_.train.steps;
  summary_.seconds = since(t_start_);
  return summary_;
}

// Greedy completions of the held-out prompts by the trainer's own weights, sharded over the ranks:
// each generates every world-th prompt, and the sums are gathered (every rank takes part).
EvalScore Trainer::evaluate_heldout() {
  std::vector<PromptRecord> mine;
  for (size_t i = static_cast<size_t>(rank_); i < eval_prompts_.size(); i += static_cast<size_t>(world_))
    mine.push_back(eval_prompts_[i]);
  policy_->eval();
  Engine engine(policy_, &tok_, {.max_batch = 64});
  SamplingOptions s = cfg_.sampling;
  s.temperature = 0;
  if (cfg_.eval.max_new_tokens > 0) s.max_new_tokens = cfg_.eval.max_new_tokens;
  EvalReport rep;
  if (!mine.empty())
    rep = evaluate(engine, tok_, mine, *rewards_, s,
                   {.samples = 1, .accuracy_part = cfg_.accuracy_part(), .prompts_per_batch = 32});
  policy_->train();
  // Sums over ranks: prompts, correct ones, completion tokens, and each part's score.
  const std::vector<std::string> parts = rewards::part_names(cfg_.rewards);
  const double n = static_cast<double>(rep.samples);
  std::vector<double> sums = {static_cast<double>(rep.prompts), rep.pass_at_1 * static_cast<double>(rep.prompts),
                              rep.mean_length * n};
  for (const auto& name : parts) sums.push_back(rep.part_means.count(name) ? rep.part_means.at(name) * n : 0.0);
  sums.push_back(n);
  sums = dist_.sum(sums);
  const double samples = std::max(1.0, sums.back());
  EvalScore e{.accuracy = sums[0] > 0 ? sums[1] / sums[0] : 0.0, .mean_length = sums[2] / samples};
  for (size_t k = 0; k < parts.size(); ++k) e.parts[parts[k]] = sums[3 + k] / samples;
  e.prompts_per_rank = static_cast<int64_t>(dist_.max({static_cast<double>(mine.size())})[0]);
  return e;
}

}  // namespace

TrainSummary train(const RunConfig& cfg, const TrainerSetup& setup) { return Trainer(cfg, setup).run(); }

}  // namespace r1
