// rl/loss against the oracle: TRL's and verl's formulas in PyTorch (scripts/fixtures/
// make_loss_fixtures.py) on fixed random inputs. Every case's advantages, sampler/trainer
// correction weights, loss value and gradients (w.r.t. log-probs and entropy) must match.
#include <doctest/doctest.h>

#include <torch/csrc/autograd/autograd.h>
#include <boost/json.hpp>
#include <cstring>

#include "common/fs.hpp"
#include "common/json.hpp"
#include "policy/safetensors.hpp"
#include "rl/loss.hpp"
#include "test_paths.hpp"

using namespace r1;

namespace {

GrpoOptions options_from(const boost::json::object& o) {
  json::Object j(o, "case");
  GrpoOptions g;
  g.advantage = *cfg::parse_enum<Advantage>(j.string("advantage"));
  g.scale_rewards = *cfg::parse_enum<ScaleRewards>(j.string("scale_rewards"));
  g.epsilon_low = j.number("epsilon_low");
  g.epsilon_high = j.number("epsilon_high");
  g.dual_clip = j.number("dual_clip");
  g.ratio_level = *cfg::parse_enum<RatioLevel>(j.string("ratio_level"));
  g.loss_aggregation = *cfg::parse_enum<LossAggregation>(j.string("loss_aggregation"));
  g.kl_coef = j.number("kl_coef");
  g.kl_estimator = *cfg::parse_enum<KlEstimator>(j.string("kl_estimator"));
  g.entropy_coef = j.number("entropy_coef");
  g.tis_cap = j.number("tis_cap");
  g.tis_mode = *cfg::parse_enum<TisMode>(j.string("tis_mode"));
  return g;
}

// The fixture's metadata: read the safetensors header directly.
boost::json::object metadata(const std::filesystem::path& file) {
  std::string bytes = read_file(file);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  auto header = json::parse(std::string_view(bytes.data() + 8, n), file.string());
  return header.as_object().at("__metadata__").as_object();
}

}  // namespace

TEST_CASE("every GRPO-family loss equals the TRL / verl oracle, value and gradients") {
  auto file = test::fixtures() / "rl" / "loss_oracle.safetensors";
  SafetensorsReader r(file);
  auto meta = metadata(file);
  auto cases = json::parse(std::string(meta.at("cases").as_string()), "cases").as_array();
  const int64_t max_new = std::stoll(std::string(meta.at("max_new").as_string()));
  at::Tensor mask = r.get("mask").clone(), rewards = r.get("rewards").clone();
  REQUIRE(cases.size() >= 14);
  int corrected = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i].as_object();
    std::string ref = std::string(c.at("reference").as_string());
    CAPTURE(i);
    CAPTURE(ref);
    GrpoOptions o = options_from(c.at("options").as_object());
    std::string k = "case" + std::to_string(i) + "/";

    at::Tensor adv = compute_advantages(rewards, o).reshape({-1});
    CHECK(at::allclose(adv, r.get(k + "advantages"), 1e-5, 1e-5));

    at::Tensor logp = r.get("logprobs").clone().requires_grad_(true);
    at::Tensor ent = r.get("entropy").clone().requires_grad_(true);
    LossInputs in{logp, r.get("old_logprobs").clone(), r.get("ref_logprobs").clone(), ent, adv, mask};
    if (o.tis_cap > 0) {
      TisWeights tw = tis_weights(in.old_logprobs, r.get("sampler_logprobs").clone(), mask, o);
      const at::Tensor want_w = r.get(k + "tis_weight");
      CHECK(((tw.weight - want_w) * mask).abs().max().item<double>() <= 1e-6);
      CHECK(tw.sum.item<double>() == doctest::Approx((want_w * mask).sum().item<double>()).epsilon(1e-5));
      CHECK(tw.clipped.item<double>() > 0);  // the inputs reach the cap or the mask
      in.tis_weight = tw.weight;
      ++corrected;
    }
    LossNorm norm{static_cast<double>(mask.size(0)), mask.sum().item<double>(), max_new};
    LossOutput out = grpo_loss(in, o, norm);
    auto grads = torch::autograd::grad({out.loss}, {logp, ent}, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    const double want = r.get(k + "loss").item<double>();
    CHECK(out.loss.item<double>() == doctest::Approx(want).epsilon(1e-5));
    CHECK((grads[0] - r.get(k + "grad_logprobs")).abs().max().item<double>() <= 1e-6);
    at::Tensor ge = grads[1].defined() ? grads[1] : at::zeros_like(ent);
    CHECK((ge - r.get(k + "grad_entropy")).abs().max().item<double>() <= 1e-6);
    CHECK(out.stats.tokens.item<double>() == doctest::Approx(mask.sum().item<double>()));
  }
  CHECK(corrected == 3);  // truncate, mask-token, mask-sequence
}

TEST_CASE("micro-batches with step-wide normalisers add up to the full-batch loss and gradient") {
  auto file = test::fixtures() / "rl" / "loss_oracle.safetensors";
  SafetensorsReader r(file);
  at::Tensor mask = r.get("mask").clone();
  for (LossAggregation agg :
       {LossAggregation::seq_mean_token_mean, LossAggregation::token_mean, LossAggregation::seq_mean_token_sum_norm}) {
    CAPTURE(cfg::name_of(agg));
    GrpoOptions o;
    o.loss_aggregation = agg;
    o.kl_coef = 0.05;
    at::Tensor adv = compute_advantages(r.get("rewards").clone(), o).reshape({-1});
    LossNorm norm{static_cast<double>(mask.size(0)), mask.sum().item<double>(), 12};
    at::Tensor logp = r.get("logprobs").clone().requires_grad_(true);
    auto slice = [&](int64_t s, int64_t n) {
      return LossInputs{logp.narrow(0, s, n),
                        r.get("old_logprobs").narrow(0, s, n),
                        r.get("ref_logprobs").narrow(0, s, n),
                        at::Tensor(),
                        adv.narrow(0, s, n),
                        mask.narrow(0, s, n)};
    };
    at::Tensor full = grpo_loss(slice(0, mask.size(0)), o, norm).loss;
    at::Tensor g_full = torch::autograd::grad({full}, {logp})[0];
    at::Tensor parts = grpo_loss(slice(0, 5), o, norm).loss + grpo_loss(slice(5, 7), o, norm).loss;
    at::Tensor g_parts = torch::autograd::grad({parts}, {logp})[0];
    CHECK(parts.item<double>() == doctest::Approx(full.item<double>()).epsilon(1e-6));
    CHECK((g_parts - g_full).abs().max().item<double>() <= 1e-7);
  }
}

TEST_CASE("advantages: zero-variance groups give zero advantage; RLOO is leave-one-out") {
  at::Tensor rw = at::tensor({1.0f, 1.0f, 1.0f, 0.0f, 1.0f, 0.0f}).reshape({2, 3});
  GrpoOptions o;
  at::Tensor a = compute_advantages(rw, o);
  CHECK(a[0].abs().max().item<double>() == 0.0);
  o.advantage = Advantage::rloo;
  at::Tensor l = compute_advantages(rw, o);
  CHECK(l[1][0].item<float>() == doctest::Approx(0.0 - 0.5));  // 0 - mean(1, 0)
  CHECK(l[1][1].item<float>() == doctest::Approx(1.0 - 0.0));  // 1 - mean(0, 0)
}
