// llm.c-style golden test of one whole GRPO step against TRL: fixed prompts, completions, sampler
// log-probs and rewards go through the trainer's own phases (make_sequences: advantages;
// PolicyUpdate: forward, loss, backward, AdamW) and must give the advantages, the loss, every
// parameter's gradient and the weights after one AdamW step that TRL 1.16's GRPOTrainer._compute_loss
// and torch.optim.AdamW give (tests/fixtures/rl/grpo_step.*, made by
// scripts/fixtures/make_grpo_step_fixture.py). float32, 1e-5 relative to each tensor's scale.
//
// AdamW's first step moves a weight by lr * g / (|g| + eps). With eps = 1e-8 a weight whose gradient
// is near 1e-8 moves by up to lr on gradient rounding alone, so for those cases the weights after
// the step are compared through TRL's own gradients (the optimizer step), and the whole chain, our
// gradients through our AdamW, in the case with eps = 1e-3, where the step is smooth in g.
#include <doctest/doctest.h>

#include <torch/optim/adamw.h>

#include <boost/json.hpp>
#include <random>

#include "common/config_fields.hpp"
#include "common/json.hpp"
#include "policy/checkpoint.hpp"
#include "policy/safetensors.hpp"
#include "rl/batch.hpp"
#include "rl/distributed.hpp"
#include "rl/update.hpp"
#include "test_paths.hpp"

using namespace r1;

namespace {

template <class E>
E choice(const boost::json::object& r1, const char* key) {
  auto e = cfg::parse_enum<E>(std::string(r1.at(key).as_string()));
  REQUIRE_MESSAGE(e.has_value(), key);
  return *e;
}

double num(const boost::json::object& o, const char* key) { return o.at(key).to_number<double>(); }

// The case's settings under r1's config names (the fixture's "r1" table).
std::pair<GrpoOptions, TrainOptions> options_of(const boost::json::object& r1) {
  GrpoOptions g;
  g.advantage = choice<Advantage>(r1, "grpo.advantage");
  g.scale_rewards = choice<ScaleRewards>(r1, "grpo.scale_rewards");
  g.loss_aggregation = choice<LossAggregation>(r1, "grpo.loss_aggregation");
  g.ratio_level = choice<RatioLevel>(r1, "grpo.ratio_level");
  g.epsilon_low = num(r1, "grpo.epsilon_low");
  g.epsilon_high = num(r1, "grpo.epsilon_high");
  g.kl_coef = num(r1, "grpo.kl_coef");
  TrainOptions t;
  t.lr = num(r1, "train.lr");
  t.weight_decay = num(r1, "train.weight_decay");
  t.adam_beta1 = num(r1, "train.adam_beta1");
  t.adam_beta2 = num(r1, "train.adam_beta2");
  t.adam_eps = num(r1, "train.adam_eps");
  t.max_grad_norm = num(r1, "train.max_grad_norm");
  t.micro_batch = static_cast<int64_t>(num(r1, "train.micro_batch"));
  return {g, t};
}

// The fixture's two groups of four completions, as the rollout workers would hand them over.
std::vector<ScoredGroup> groups_of(const boost::json::object& fx) {
  const auto& prompts = fx.at("prompts").as_array();
  const auto& comps = fx.at("completions").as_array();
  const auto& old = fx.at("old_logprobs").as_array();
  const auto& rewards = fx.at("rewards").as_array();
  const int64_t G = fx.at("group_size").as_int64();
  std::vector<ScoredGroup> groups(prompts.size());
  for (size_t i = 0; i < comps.size(); ++i) {
    ScoredGroup& g = groups[i / static_cast<size_t>(G)];
    if (g.prompt_ids.empty())
      for (const auto& t : prompts[i / static_cast<size_t>(G)].as_array())
        g.prompt_ids.push_back(static_cast<TokenId>(t.as_int64()));
    Completion c;
    for (const auto& t : comps[i].as_array()) c.tokens.push_back(static_cast<TokenId>(t.as_int64()));
    for (const auto& l : old[i].as_array()) c.logprobs.push_back(static_cast<float>(l.to_number<double>()));
    c.finish_reason = FinishReason::stop;
    g.completions.push_back(c);
    g.rewards.push_back(rewards[i].to_number<double>());
  }
  return groups;
}

// max |a - b| relative to max |b|: the tensor's scale, so near-zero entries do not dominate.
double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-30);
}

}  // namespace

TEST_CASE("one whole GRPO step equals TRL's GRPOTrainer: advantages, loss, gradients, weights after AdamW") {
  const auto dir = test::fixtures() / "rl";
  const auto fx = json::parse_file(dir / "grpo_step.json").as_object();
  SafetensorsReader expect(dir / "grpo_step.safetensors");
  const auto model_dir = test::source_dir() / "models" / "tiny";
  const auto& cases = fx.at("cases").as_array();
  REQUIRE(cases.size() >= 4);
  for (const auto& cv : cases) {
    const auto& c = cv.as_object();
    const std::string name(c.at("name").as_string());
    CAPTURE(name);
    auto [grpo, train] = options_of(c.at("r1").as_object());
    CausalLM model = load_pretrained(model_dir, tensor_options(Dtype::float32, "cpu"));
    model->train();

    // Advantages (rl/batch.cpp) from the rewards.
    std::vector<Sequence> seqs = make_sequences(groups_of(fx), grpo);
    const auto& adv = c.at("advantages").as_array();
    REQUIRE(seqs.size() == adv.size());
    for (size_t i = 0; i < seqs.size(); ++i)
      CHECK(seqs[i].advantage == doctest::Approx(adv[i].to_number<double>()).epsilon(1e-5));

    // The forward first: the trainer's log-probs are TRL's (its padded batch rounds within 2e-6).
    std::vector<Sequence*> ptrs;
    std::vector<Sequence> scored = seqs;
    for (auto& s : scored) ptrs.push_back(&s);
    score_logprobs(model, ptrs, 1.0, 8, LogprobSlot::ref);
    at::Tensor lp = expect.get("logprobs");  // [8, 6] zero-padded
    for (size_t i = 0; i < scored.size(); ++i)
      for (int64_t t = 0; t < scored[i].comp_len; ++t)
        CHECK(scored[i].ref_logprobs[t] ==
              doctest::Approx(lp[static_cast<int64_t>(i)][t].item<double>()).epsilon(1e-5));

    // One step of the trainer's update: loss, backward, AdamW.
    torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(train.lr)
                                                     .betas({train.adam_beta1, train.adam_beta2})
                                                     .eps(train.adam_eps)
                                                     .weight_decay(train.weight_decay));
    Distributed one_rank(LaunchEnv{}, DistributedOptions{}, at::kCPU);
    StepMetrics m;
    std::mt19937_64 rng(1);
    TrainWeights weights(model, Precision::fp32);
    SkipGuard guard;
    PolicyUpdate(model, weights, opt, one_rank, guard,
                 {.grpo = grpo,
                  .train = train,
                  .temperature = 1.0,
                  .max_new_tokens = static_cast<int64_t>(num(c.at("r1").as_object(), "sampling.max_new_tokens"))})
        .run(seqs, 0, train.lr, rng, m);
    CHECK(m.loss.value(Reduce::mean) == doctest::Approx(num(c, "loss")).epsilon(1e-5));
    CHECK(m.grad_norm.value(Reduce::mean) == doctest::Approx(num(c, "grad_norm")).epsilon(1e-5));
    double worst_grad = 0, worst_chain = 0;
    int64_t params = 0;
    for (const auto& p : model->named_parameters()) {
      CAPTURE(p.key());
      REQUIRE(p.value().grad().defined());
      worst_grad = std::max(worst_grad, rel_err(p.value().grad(), expect.get(name + ".grad." + p.key())));
      worst_chain = std::max(worst_chain, rel_err(p.value().detach(), expect.get(name + ".after." + p.key())));
      ++params;
    }
    CHECK(params == static_cast<int64_t>(fx.at("params").as_array().size()));  // every parameter compared
    CHECK(worst_grad <= 1e-5);

    // The optimizer step: TRL's gradients through this AdamW give TRL's weights.
    CausalLM fresh = load_pretrained(model_dir, tensor_options(Dtype::float32, "cpu"));
    torch::optim::AdamW adamw(fresh->parameters(), torch::optim::AdamWOptions(train.lr)
                                                       .betas({train.adam_beta1, train.adam_beta2})
                                                       .eps(train.adam_eps)
                                                       .weight_decay(train.weight_decay));
    for (auto& p : fresh->named_parameters()) p.value().mutable_grad() = expect.get(name + ".grad." + p.key()).clone();
    adamw.step();
    double worst_step = 0;
    for (const auto& p : fresh->named_parameters())
      worst_step = std::max(worst_step, rel_err(p.value().detach(), expect.get(name + ".after." + p.key())));
    CHECK(worst_step <= 1e-6);
    MESSAGE(name << ": loss " << m.loss.value(Reduce::mean) << "; gradients within " << worst_grad
                 << "; AdamW on TRL's gradients within " << worst_step << "; our gradients through our AdamW within "
                 << worst_chain << " (relative to each tensor's scale; adam_eps " << train.adam_eps << ")");
    if (train.adam_eps >= 1e-3) CHECK(worst_chain <= 1e-5);  // the smooth case: the whole chain
  }
}
