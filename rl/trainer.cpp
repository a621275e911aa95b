#include "rl/trainer.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <csignal>
#include <fmt/ranges.h>
#include <sstream>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "common/config.hpp"
#include "common/error.hpp"
#include "common/fs.hpp"
#include "metrics/run_log.hpp"
#include "policy/checkpoint.hpp"
#include "policy/completions.hpp"
#include "policy/device.hpp"
#include "rewards/service/client.hpp"
#include "rl/checkpoint.hpp"
#include "rl/eval.hpp"
#include "rl/loss.hpp"
#include "rollout/workers.hpp"

namespace fs = std::filesystem;

namespace r1 {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// One completion as the trainer sees it.
struct Seq {
  std::vector<TokenId> ids;  // prompt + completion
  int64_t prompt_len = 0, comp_len = 0;
  int64_t group = 0;  // sequences of one group share their prompt
  std::vector<float> old_logprobs, ref_logprobs;
  double advantage = 0;
  bool counted = true;  // false when masked out (truncated and mask_truncated)
};

double lr_at(const TrainOptions& t, int64_t step) {
  if (t.warmup_steps > 0 && step < t.warmup_steps)
    return t.lr * static_cast<double>(step + 1) / static_cast<double>(t.warmup_steps);
  if (t.lr_schedule == "cosine") {
    const double span = std::max<int64_t>(1, t.steps - t.warmup_steps);
    const double p = std::min(1.0, static_cast<double>(step - t.warmup_steps) / span);
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * p)));
  }
  return t.lr;
}

// Per-token log-probs (and entropies) of the completion tokens of `seqs`, as padded [b, T].
struct MicroForward {
  at::Tensor logprobs, entropy, mask, old_logprobs, ref_logprobs, advantages;
  double tokens = 0;
};

MicroForward forward_micro(CausalLM& model, const std::vector<const Seq*>& seqs, double temperature, bool with_ref,
                           bool entropy) {
  const int64_t b = static_cast<int64_t>(seqs.size());
  std::vector<CompletionRef> rows;
  int64_t T = 1;
  for (const Seq* s : seqs) {
    rows.push_back({s->ids.data(), s->prompt_len, s->comp_len, s->group});  // a group's samples share its prompt
    T = std::max(T, s->comp_len);
  }
  at::Tensor mask = at::zeros({b, T}), old = at::zeros({b, T}), ref = at::zeros({b, T}), adv = at::zeros({b});
  auto m_a = mask.accessor<float, 2>();
  auto o_a = old.accessor<float, 2>();
  auto r_a = ref.accessor<float, 2>();
  double tokens = 0;
  for (int64_t i = 0; i < b; ++i) {
    const Seq& s = *seqs[i];
    for (int64_t t = 0; t < s.comp_len; ++t) {
      m_a[i][t] = s.counted ? 1.f : 0.f;
      o_a[i][t] = s.old_logprobs[t];
      if (with_ref) r_a[i][t] = s.ref_logprobs[t];
      tokens += s.counted;
    }
    adv[i] = s.advantage;
  }
  const auto dev = model->options().device();
  CompletionLogprobs lp = completion_logprobs(*model, rows, {.temperature = temperature, .chunk_rows = 1024, .entropy = entropy});
  MicroForward f;
  f.logprobs = lp.logprobs;
  f.entropy = lp.entropy;
  f.mask = mask.to(dev);
  f.old_logprobs = old.to(dev);
  if (with_ref) f.ref_logprobs = ref.to(dev);
  f.advantages = adv.to(dev);
  f.tokens = tokens;
  return f;
}

// Fills each sequence's log-probs from `model` without gradients (reference model, or recompute).
void score_logprobs(CausalLM& model, std::vector<Seq>& seqs, double temperature, int64_t micro, bool into_ref) {
  at::NoGradGuard ng;
  for (size_t s = 0; s < seqs.size(); s += static_cast<size_t>(micro)) {
    std::vector<const Seq*> part;
    for (size_t i = s; i < std::min(seqs.size(), s + static_cast<size_t>(micro)); ++i) part.push_back(&seqs[i]);
    MicroForward f = forward_micro(model, part, temperature, false, false);
    at::Tensor lp = f.logprobs.to(at::kCPU).contiguous();
    auto lp_a = lp.accessor<float, 2>();
    for (size_t i = 0; i < part.size(); ++i) {
      Seq& q = seqs[s + i];
      auto& dst = into_ref ? q.ref_logprobs : q.old_logprobs;
      dst.resize(static_cast<size_t>(q.comp_len));
      for (int64_t t = 0; t < q.comp_len; ++t) dst[t] = lp_a[static_cast<int64_t>(i)][t];
    }
  }
}

double part_value(const std::vector<std::pair<std::string, double>>& parts, const std::string& name, bool* found) {
  for (const auto& [n, v] : parts)
    if (n == name) return *found = true, v;
  *found = false;
  return 0;
}

std::string fmt_duration(double s) {
  if (s < 60) return fmt::format("{:.0f}s", s);
  return fmt::format("{}m{:02d}s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
}

}  // namespace

TrainSummary train(const RunConfig& cfg, const TrainerSetup& setup) {
  const auto t_start = Clock::now();
  const TrainOptions& to = cfg.train;
  const GrpoOptions& go = cfg.grpo;
  R1_CHECK(cfg.sampling.temperature > 0, "[sampling] temperature must be > 0 for training (GRPO needs samples)");
  R1_CHECK(cfg.rollout.group_size >= 2, "[rollout] group_size must be >= 2: advantages compare completions of a prompt");
  R1_CHECK(!cfg.rewards.checkers.empty(), "[rewards] has no [[rewards.checkers]]: nothing to reward");

  TrainSummary sum;
  sum.run_dir = setup.run_dir.empty() ? fs::path(cfg.run.out_dir) / cfg.run.name : setup.run_dir;
  const int64_t rank = setup.launch.rank, world = setup.launch.world_size;
  const bool lead = rank == 0;
  R1_CHECK(cfg.rollout.prompts_per_step % world == 0,
           "[rollout] prompts_per_step = {} is the global batch and must divide by the {} ranks", cfg.rollout.prompts_per_step,
           world);
  if (lead && !setup.resume) {
    fs::create_directories(sum.run_dir);
    write_file_atomic(sum.run_dir / "config.toml", cfg::to_toml(cfg));
  }
  std::optional<FoundCheckpoint> resume_from;
  if (setup.resume) {
    std::vector<std::string> skipped;
    resume_from = find_checkpoint(sum.run_dir, &skipped);
    for (const auto& why : skipped) fmt::print(stderr, "r1 train: skipping checkpoint {}\n", why);
    R1_CHECK(resume_from.has_value(), "{}: no good checkpoint to resume from{}", sum.run_dir.string(),
             skipped.empty() ? " (set [train] save_every to write them)" : " (see the reasons above)");
  }
  at::manual_seed(static_cast<uint64_t>(cfg.run.seed));
  // Pinned even at LibTorch's default count: workers pin theirs later and must not leak into this thread.
  pin_cpu_threads(cfg.model.threads > 0 ? static_cast<int>(cfg.model.threads) : at::get_num_threads());

  // Models: the trainer's policy, an optional frozen reference, and one copy per rollout worker.
  const fs::path model_dir = cfg.model.path;
  CausalLM policy = load_pretrained(cfg.model);
  policy->train();
  std::optional<CausalLM> ref;
  if (go.kl_coef > 0) {
    ref = load_pretrained(cfg.model);
    (*ref)->eval();
    for (auto& p : (*ref)->parameters()) p.set_requires_grad(false);
  }
  Tokenizer tok = Tokenizer::load(model_dir / "tokenizer.json");

  // Rewards: in-process by default, the remote service when [rewards] endpoint is set.
  auto backend = service::make_reward_backend(cfg.rewards, service::client_options(cfg.rewards));
  RewardStage reward = [&backend](ScoredGroup& g) {
    std::vector<rewards::Sample> batch;
    for (const auto& c : g.completions)
      batch.push_back({g.prompt.prompt, c.text, g.prompt.reference, {}, static_cast<int64_t>(c.tokens.size())});
    for (const auto& s : backend->score(batch)) {
      g.rewards.push_back(s.score);
      std::vector<std::pair<std::string, double>> parts;
      std::string reason;
      for (const auto& p : s.parts) {
        parts.emplace_back(p.name, p.result.score);
        reason += (reason.empty() ? "" : "; ") + p.name + ": " + p.result.reason;
      }
      g.reward_parts.push_back(std::move(parts));
      g.reward_reasons.push_back(std::move(reason));
    }
  };

  auto dataset = std::make_shared<Dataset>(cfg.data, rank, world);
  Distributed dist(setup.launch, cfg.distributed, policy->options().device());
  auto store = std::make_shared<WeightStore>(3);
  RolloutPool pool(cfg.rollout, cfg.sampling,
                   {.make_model = [&](int64_t) { return CausalLM(policy->config(), policy->options()); },
                    .tokenizer = &tok,
                    .dataset = dataset,
                    .weights = store,
                    .reward = reward,
                    .stream_stride = world,
                    .stream_offset = rank,
                    .threads = cfg.rollout.threads > 0 ? cfg.rollout.threads : cfg.model.threads});
  int64_t version = 0;

  // Held-out greedy eval on the trainer's own weights.
  std::vector<PromptRecord> eval_prompts;
  if (!cfg.eval.path.empty()) {
    DatasetOptions eo = cfg.data;
    eo.path = cfg.eval.path;
    eo.limit = cfg.eval.limit;
    eo.shuffle = false;
    Dataset ed(eo);
    for (size_t i = 0; i < ed.size(); ++i) eval_prompts.push_back(ed.at(i));
  }
  auto run_eval = [&]() -> EvalScore {
    EvalScore es;
    if (eval_prompts.empty()) return es;
    policy->eval();
    Engine engine(policy, &tok, {.max_batch = 64});
    SamplingOptions s = cfg.sampling;
    s.temperature = 0;
    if (cfg.eval.max_new_tokens > 0) s.max_new_tokens = cfg.eval.max_new_tokens;
    EvalOptions eo;
    eo.prompts_per_batch = 32;
    double acc = 0, fmtok = 0;
    bool has_fmt = false;
    rewards::Scorer scorer(cfg.rewards);
    EvalReport rep = evaluate(engine, tok, eval_prompts, scorer, s, eo, [&](const EvalSample& x) {
      for (const auto& p : x.scored.parts) {
        if (p.name == to.accuracy_part) acc += p.result.score >= 1.0;
        if (p.name == cfg.eval.format_part) fmtok += p.result.score >= 1.0, has_fmt = true;
      }
    });
    policy->train();
    const double n = static_cast<double>(eval_prompts.size());
    es.accuracy = acc / n;
    es.format = has_fmt ? fmtok / n : -1;
    es.mean_length = rep.mean_length;
    return es;
  };

  std::optional<metrics::RunLog> log;
  if (lead) log.emplace(sum.run_dir);
  if (!setup.resume && lead) sum.before = run_eval();
  if (lead && sum.before.accuracy >= 0) {
    log->log_step({{"step", 0}, {"eval/accuracy", sum.before.accuracy}, {"eval/format", sum.before.format},
                   {"eval/length", sum.before.mean_length}});
    fmt::print(stderr, "r1 train: before RL: eval accuracy {:.3f}, format {:.3f} on {} held-out prompts\n",
               sum.before.accuracy, sum.before.format, eval_prompts.size());
  }

  std::vector<at::Tensor> params;
  for (auto& p : policy->parameters()) params.push_back(p);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(to.lr)
                                      .betas({to.adam_beta1, to.adam_beta2})
                                      .eps(to.adam_eps)
                                      .weight_decay(to.weight_decay));
  const int64_t per_step = cfg.rollout.prompts_per_step / world;  // this rank's share
  const int64_t G = cfg.rollout.group_size;
  std::mt19937_64 shuffle_rng(static_cast<uint64_t>(cfg.run.seed) ^ 0x5eedULL);
  const bool tty = isatty(STDERR_FILENO);
  int64_t first_step = 0, consumed = 0;
  if (resume_from) {
    load_checkpoint(resume_from->dir, policy, opt, ref ? &*ref : nullptr);
    const TrainerState& st = resume_from->state;
    first_step = st.step, version = st.version;
    if (st.world_size == world) {  // every rank continues its own cursor: exact
      consumed = st.records_by_rank[rank];
      std::istringstream(st.shuffle_rng) >> shuffle_rng;
    } else {
      // Another number of ranks: the records drawn so far are a prefix of the global order when every
      // rank drew the same number and epochs split evenly; rank r then continues at global position
      // consumed * world + r, with the same sampling streams as any other world size.
      const int64_t total = std::accumulate(st.records_by_rank.begin(), st.records_by_rank.end(), int64_t{0});
      const bool even = std::all_of(st.records_by_rank.begin(), st.records_by_rank.end(),
                                    [&](int64_t c) { return c == st.records_by_rank[0]; });
      const auto n = static_cast<int64_t>(dataset->size());
      R1_CHECK(even && total % world == 0 && n % world == 0 && n % st.world_size == 0,
               "resume: the checkpoint was written by {} rank(s) that drew {} records; {} ranks can continue it only "
               "when every rank drew the same number (no dynamic sampling) and both the records drawn ({}) and the "
               "dataset's records ({}) divide by both rank counts", st.world_size, fmt::join(st.records_by_rank, "/"), world,
               total, n);
      consumed = total / world;
      shuffle_rng.seed(static_cast<uint64_t>(cfg.run.seed) ^ 0x5eedULL ^ static_cast<uint64_t>(first_step));
    }
    dataset->set_cursor(dataset->cursor_after(consumed));
    if (lead) log->truncate_after(first_step);
    fmt::print(stderr, "r1 train: resuming {} from {} (step {})\n", sum.run_dir.string(), resume_from->dir.string(),
               first_step);
  }
  dist.broadcast(params);  // every replica starts from rank 0's weights
  dist.attach_grads(params);
  pool.publish(*policy, version);
  pool.start_at(consumed);
  pool.start();
  // Test hooks: R1_TEST_CRASH_AFTER_STEP=N kills this process (SIGKILL) after step N, on every rank
  // or only on R1_TEST_CRASH_RANK.
  const char* crash_env = std::getenv("R1_TEST_CRASH_AFTER_STEP");
  const char* crash_rank_env = std::getenv("R1_TEST_CRASH_RANK");
  const int64_t crash_after = crash_env && (!crash_rank_env || std::atoll(crash_rank_env) == rank) ? std::atoll(crash_env) : -1;

  pool.request(per_step);
  for (int64_t step = first_step; step < to.steps; ++step) {
    const auto t_step = Clock::now();
    if (cfg.rollout.max_policy_lag >= 1 && step + 1 < to.steps) pool.request(per_step);  // overlap the next rollout

    // 1. Groups: take the step's groups; dynamic sampling drops all-equal groups and refills.
    auto t0 = Clock::now();
    std::vector<ScoredGroup> groups = pool.take(per_step);
    consumed += per_step;
    int64_t dropped = 0;
    auto all_equal = [](const ScoredGroup& g) {
      return std::all_of(g.rewards.begin(), g.rewards.end(), [&](double r) { return r == g.rewards[0]; });
    };
    int64_t zero_std = std::count_if(groups.begin(), groups.end(), all_equal);
    if (go.dynamic_sampling) {
      std::vector<ScoredGroup> keep;
      for (auto& g : groups) (all_equal(g) ? ++dropped : (keep.push_back(std::move(g)), 0));
      for (int64_t round = 0; round < go.max_refill_rounds && static_cast<int64_t>(keep.size()) < per_step; ++round) {
        const int64_t need = per_step - static_cast<int64_t>(keep.size());
        pool.request(need);
        consumed += need;
        for (auto& g : pool.take(need)) (all_equal(g) ? ++dropped : (keep.push_back(std::move(g)), 0));
      }
      groups = std::move(keep);
    }
    const double t_rollout = since(t0);

    // 2. Advantages and the training sequences.
    std::vector<Seq> seqs;
    double reward_sum = 0, reward_sq = 0, acc = 0, len_sum = 0, len_max = 0, truncated = 0, lag = 0, gen_tokens = 0;
    double t_reward = 0, t_generate = 0;  // summed over groups (generate: worker-seconds)
    std::map<std::string, double> part_sums;
    boost::json::array sample_log;
    if (!groups.empty()) {
      at::Tensor rw = at::zeros({static_cast<int64_t>(groups.size()), G});
      for (size_t i = 0; i < groups.size(); ++i)
        for (int64_t j = 0; j < G; ++j) rw[static_cast<int64_t>(i)][j] = groups[i].rewards[j];
      at::Tensor adv = compute_advantages(rw, go);
      for (size_t i = 0; i < groups.size(); ++i) {
        const ScoredGroup& g = groups[i];
        t_reward += g.reward_seconds;
        t_generate += g.generate_seconds;
        lag += static_cast<double>(version - g.policy_version);
        for (int64_t j = 0; j < G; ++j) {
          const Completion& c = g.completions[j];
          Seq s;
          s.ids = g.prompt_ids;
          s.ids.insert(s.ids.end(), c.tokens.begin(), c.tokens.end());
          s.prompt_len = static_cast<int64_t>(g.prompt_ids.size());
          s.group = static_cast<int64_t>(i);
          s.comp_len = static_cast<int64_t>(c.tokens.size());
          s.old_logprobs = c.logprobs;
          s.advantage = adv[static_cast<int64_t>(i)][j].item<double>();
          s.counted = !(go.mask_truncated && c.finish_reason == "length");
          seqs.push_back(std::move(s));
          const double r = g.rewards[j];
          reward_sum += r, reward_sq += r * r;
          bool found = false;
          double a = part_value(g.reward_parts[j], to.accuracy_part, &found);
          acc += found ? (a >= 1.0) : (r >= 1.0);
          for (const auto& [n, v] : g.reward_parts[j]) part_sums[n] += v;
          len_sum += static_cast<double>(c.tokens.size());
          len_max = std::max(len_max, static_cast<double>(c.tokens.size()));
          truncated += c.finish_reason == "length";
          gen_tokens += static_cast<double>(c.tokens.size());
          if (lead && to.log_samples_every > 0 && step % to.log_samples_every == 0) {
            boost::json::object parts;
            for (const auto& [n, v] : g.reward_parts[j]) parts[n] = v;
            sample_log.push_back({{"group", static_cast<int64_t>(i)}, {"sample", j}, {"prompt", g.prompt.prompt},
                                  {"completion", c.text}, {"reward", r}, {"parts", parts},
                                  {"reason", g.reward_reasons[j]}, {"tokens", static_cast<int64_t>(c.tokens.size())},
                                  {"finish_reason", c.finish_reason}, {"policy_version", g.policy_version},
                                  {"advantage", seqs.back().advantage}});
          }
        }
      }
    }
    double n_samples = std::max<double>(1.0, static_cast<double>(seqs.size()));

    // 3. Log-probs the loss compares against: the sampler's (default) or a recomputed forward; the reference's.
    auto t1 = Clock::now();
    if (to.old_logprobs == "recompute") score_logprobs(policy, seqs, cfg.sampling.temperature, to.micro_batch, false);
    if (ref) score_logprobs(*ref, seqs, cfg.sampling.temperature, to.micro_batch, true);

    // 4. mu passes of minibatch updates with gradient accumulation over micro-batches.
    LossStats stats;
    const Distributed::GradSyncStats sync_before = dist.grad_sync_stats();
    double grad_norm = 0, train_tokens = 0;
    int64_t updates = 0;
    const double lr = lr_at(to, step);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    const bool need_entropy = true;  // logged every step; the bonus uses it too
    std::vector<size_t> order(seqs.size());
    std::iota(order.begin(), order.end(), 0);
    for (int64_t epoch = 0; epoch < to.inner_epochs && !seqs.empty(); ++epoch) {
      std::shuffle(order.begin(), order.end(), shuffle_rng);
      const size_t per_mb = (seqs.size() + to.minibatches - 1) / static_cast<size_t>(to.minibatches);
      for (size_t mb = 0; mb < seqs.size(); mb += per_mb) {
        const size_t mb_end = std::min(seqs.size(), mb + per_mb);
        // Within a minibatch, group members sit together so their micro-batches share prompts.
        std::stable_sort(order.begin() + static_cast<std::ptrdiff_t>(mb), order.begin() + static_cast<std::ptrdiff_t>(mb_end),
                         [&](size_t x, size_t y) { return seqs[x].group < seqs[y].group; });
        LossNorm norm{static_cast<double>(mb_end - mb), 0, cfg.sampling.max_new_tokens};
        for (size_t i = mb; i < mb_end; ++i) norm.tokens += seqs[order[i]].counted ? seqs[order[i]].comp_len : 0;
        if (dist.active()) {  // step-wide totals over every rank: the same objective as one big batch
          auto tot = dist.sum({norm.sequences, norm.tokens});
          norm.sequences = tot[0], norm.tokens = tot[1];
        }
        opt.zero_grad();
        for (size_t u = mb; u < mb_end; u += static_cast<size_t>(to.micro_batch)) {
          if (u + static_cast<size_t>(to.micro_batch) >= mb_end) dist.arm_grad_sync();  // last backward of the step
          std::vector<const Seq*> part;
          for (size_t i = u; i < std::min(mb_end, u + static_cast<size_t>(to.micro_batch)); ++i) part.push_back(&seqs[order[i]]);
          MicroForward f = forward_micro(policy, part, cfg.sampling.temperature, ref.has_value(), need_entropy);
          LossOutput out = grpo_loss({f.logprobs, f.old_logprobs, f.ref_logprobs, f.entropy, f.advantages, f.mask}, go, norm);
          out.loss.backward();
          if (epoch == 0) {  // statistics of the first pass: the policy the samples came from
            stats.kl += out.stats.kl, stats.entropy += out.stats.entropy, stats.tokens += out.stats.tokens;
            stats.clip_low += out.stats.clip_low, stats.clip_high += out.stats.clip_high;
          }
          for (const Seq* q : part) train_tokens += static_cast<double>(q->ids.size());
        }
        dist.finish_grad_sync();
        if (to.max_grad_norm > 0)
          grad_norm += torch::nn::utils::clip_grad_norm_(params, to.max_grad_norm);
        else {
          double sq = 0;
          for (auto& p : params)
            if (p.grad().defined()) sq += p.grad().pow(2).sum().item<double>();
          grad_norm += std::sqrt(sq);
        }
        opt.step();
        ++updates;
      }
    }
    const double t_train = since(t1);

    // 5. Weight sync: the next requests sample from the new version.
    auto t2 = Clock::now();
    ++version;
    pool.publish(*policy, version);
    if (cfg.rollout.max_policy_lag == 0 && step + 1 < to.steps) pool.request(per_step);
    const double t_sync = since(t2);

    // 6. Metrics (summed over ranks), a cross-rank weight check, samples, eval, checkpoints.
    double n_groups = static_cast<double>(groups.size()), zero_std_d = static_cast<double>(zero_std);
    double dropped_d = static_cast<double>(dropped);
    if (dist.active()) {
      std::vector<double> v = {reward_sum, reward_sq, acc, static_cast<double>(seqs.size()), len_sum, truncated,
                               gen_tokens, zero_std_d, dropped_d, stats.kl, stats.entropy, stats.clip_low,
                               stats.clip_high, stats.tokens, lag, n_groups, train_tokens};
      for (const auto& [n, x] : part_sums) v.push_back(x);  // same checkers on every rank: same names, same order
      v = dist.sum(v);
      reward_sum = v[0], reward_sq = v[1], acc = v[2], n_samples = std::max(1.0, v[3]), len_sum = v[4];
      truncated = v[5], gen_tokens = v[6], zero_std_d = v[7], dropped_d = v[8], stats.kl = v[9];
      stats.entropy = v[10], stats.clip_low = v[11], stats.clip_high = v[12], stats.tokens = v[13], lag = v[14];
      n_groups = v[15], train_tokens = v[16];
      size_t i = 17;
      for (auto& [n, x] : part_sums) x = v[i++];
      len_max = dist.max(len_max);
    }
    if (cfg.distributed.checksum_every > 0 && (step + 1) % cfg.distributed.checksum_every == 0)
      dist.check_same(weights_checksum(*policy), fmt::format("the weight checksum after step {}", step + 1));
    // Generation speed over the time spent generating: the wait in take() alone is ~0 when the
    // rollout already ran during the previous step's eval or training (max_policy_lag).
    const double gen_time = std::max(t_rollout, t_generate / static_cast<double>(std::max<int64_t>(1, cfg.rollout.workers)));
    const double mean = reward_sum / n_samples;
    const double tok = std::max(stats.tokens, 1.0);
    boost::json::object m{{"step", step + 1},
                          {"reward/mean", mean},
                          {"reward/std", std::sqrt(std::max(0.0, reward_sq / n_samples - mean * mean))},
                          {"accuracy", acc / n_samples},
                          {"zero_std_frac", zero_std_d / static_cast<double>(cfg.rollout.prompts_per_step)},
                          {"dropped_groups", dropped_d},
                          {"length/mean", len_sum / n_samples},
                          {"length/max", len_max},
                          {"truncated", truncated / n_samples},
                          {"kl", stats.kl / tok},
                          {"entropy", stats.entropy / tok},
                          {"clip/low", stats.clip_low / tok},
                          {"clip/high", stats.clip_high / tok},
                          {"grad_norm", updates ? grad_norm / static_cast<double>(updates) : 0.0},
                          {"lr", lr},
                          {"tokens_per_s/gen", gen_time > 0 ? gen_tokens / gen_time : 0.0},
                          {"tokens_per_s/train", t_train > 0 ? train_tokens * to.inner_epochs / t_train : 0.0},
                          {"time/rollout", t_rollout},
                          {"time/generate", t_generate / static_cast<double>(std::max<int64_t>(1, cfg.rollout.workers))},
                          {"time/reward", t_reward},
                          {"time/train", t_train},
                          {"time/sync", t_sync},
                          {"policy_lag", n_groups > 0 ? lag / n_groups : 0.0}};
    for (const auto& [n, v] : part_sums) m["reward/" + n + "/mean"] = v / n_samples;
    if (dist.active()) {  // share of gradient buckets whose all-reduce overlapped backward
      const Distributed::GradSyncStats sync = dist.grad_sync_stats();
      const double launched = static_cast<double>(sync.buckets * (sync.syncs - sync_before.syncs));
      m["dist/overlapped_buckets"] = launched > 0 ? static_cast<double>(sync.launched_early - sync_before.launched_early) / launched : 0.0;
    }
    const bool last = step + 1 == to.steps;
    if (lead && !eval_prompts.empty() && (last || (cfg.eval.every > 0 && (step + 1) % cfg.eval.every == 0))) {
      EvalScore es = run_eval();
      m["eval/accuracy"] = es.accuracy;
      m["eval/format"] = es.format;
      m["eval/length"] = es.mean_length;
      if (last) sum.after = es;
    }
    std::vector<int64_t> by_rank;
    if (last || (to.save_every > 0 && (step + 1) % to.save_every == 0)) {  // every rank takes part
      std::vector<double> v(static_cast<size_t>(world), 0.0);
      v[static_cast<size_t>(rank)] = static_cast<double>(consumed);
      for (double x : dist.sum(v)) by_rank.push_back(static_cast<int64_t>(x));
    }
    if (lead) {
      log->log_step(m);
      if (!sample_log.empty()) log->log_samples(step + 1, sample_log);
      if (last || (to.save_every > 0 && (step + 1) % to.save_every == 0)) {
        std::ostringstream rng_state;
        rng_state << shuffle_rng;
        log->sync();
        save_checkpoint(sum.run_dir, policy, opt, ref ? &*ref : nullptr,
                        {step + 1, version, by_rank, rng_state.str(), world},
                        {.tokenizer_from = model_dir, .keep = to.keep_checkpoints});
      }
    }
    if (step + 1 == crash_after) std::raise(SIGKILL);
    if (setup.progress && lead) {
      const double elapsed = since(t_start), per = since(t_step);
      std::string line = fmt::format("step {}/{} | reward {:.3f} | acc {:.3f} | len {:.0f} | gen {:.0f} tok/s | {} | ETA {}",
                                     step + 1, to.steps, mean, acc / n_samples, len_sum / n_samples,
                                     gen_time > 0 ? gen_tokens / gen_time : 0.0, fmt_duration(elapsed),
                                     fmt_duration(per * static_cast<double>(to.steps - step - 1)));
      if (m.contains("eval/accuracy"))
        line += fmt::format(" | eval acc {:.3f} fmt {:.3f}", m["eval/accuracy"].as_double(), m["eval/format"].as_double());
      if (tty) fmt::print(stderr, "\r\033[K{}{}", line, last ? "\n" : "");
      else fmt::print(stderr, "{}\n", line);
    }
  }
  pool.stop();
  if (lead) {
    sum.model_dir = sum.run_dir / "model";
    save_pretrained(policy, sum.model_dir, {.copy_tokenizer_from = model_dir});
    log->sync();
  }
  sum.steps = to.steps;
  sum.seconds = since(t_start);
  return sum;
}

}  // namespace r1
