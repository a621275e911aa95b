#include "rl/pretrain.hpp"

#include <unistd.h>

#include <torch/nn/utils/clip_grad.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <fstream>
#include <set>

#include "common/error.hpp"
#include "common/fs.hpp"
#include "policy/checkpoint.hpp"
#include "policy/logprobs.hpp"
#include "policy/tokenizer.hpp"
#include "rl/adamw.hpp"
#include "rl/arith.hpp"

namespace fs = std::filesystem;

namespace r1 {

namespace {

void write_problems(const fs::path& file, std::mt19937_64& rng, int64_t n, int bucket) {
  std::string out;
  std::set<std::pair<int64_t, int64_t>> seen;
  while (static_cast<int64_t>(seen.size()) < n) {
    arith::Problem p = arith::sample_problem(rng, true);
    // Two disjoint halves of the held-out split: RL training and evaluation.
    if (((p.a * 7 + p.b) % 2) != bucket || !seen.insert({p.a, p.b}).second) continue;
    boost::json::object o{{"question", p.question()}, {"answer", std::to_string(p.answer())}};
    out += boost::json::serialize(o) + "\n";
  }
  write_file_atomic(file, out);
}

ModelConfig tiny_config(const PretrainOptions& o, const Tokenizer& tok) {
  const auto eos = tok.eos_id();
  R1_CHECK(eos.has_value(), "pretrain: the tokenizer has no eos token (set eos_token in tokenizer_config.json)");
  boost::json::object c{{"architectures", boost::json::array{boost::json::string("Qwen3ForCausalLM")}},
                        {"model_type", "qwen3"},
                        {"vocab_size", static_cast<int64_t>(tok.vocab_size())},
                        {"hidden_size", o.hidden_size},
                        {"intermediate_size", o.intermediate_size},
                        {"num_hidden_layers", o.layers},
                        {"num_attention_heads", o.heads},
                        {"num_key_value_heads", o.kv_heads},
                        {"head_dim", o.hidden_size / o.heads},
                        {"hidden_act", "silu"},
                        {"max_position_embeddings", 1024},
                        {"rms_norm_eps", 1e-6},
                        {"rope_theta", 10000.0},
                        {"tie_word_embeddings", true},
                        {"attention_bias", false},
                        {"attention_dropout", 0.0},
                        {"eos_token_id", static_cast<int64_t>(*eos)},
                        {"pad_token_id", static_cast<int64_t>(*eos)},
                        {"torch_dtype", "float32"}};
  return ModelConfig::from_json(c, "pretrain config");
}

}  // namespace

void init_weights(CausalLM& m, uint64_t seed) {
  at::NoGradGuard ng;
  at::manual_seed(seed);
  const double std = 0.02, out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(m->config().num_hidden_layers));
  for (auto& p : m->named_parameters()) {
    const std::string& n = p.key();
    if (n.find("norm") != std::string::npos)
      p.value().fill_(1.0);
    else if (n.find(".bias") != std::string::npos)
      p.value().zero_();
    else if (n.find("o_proj") != std::string::npos || n.find("down_proj") != std::string::npos)
      p.value().normal_(0, out_std);
    else
      p.value().normal_(0, std);
  }
}

PretrainSummary pretrain(const PretrainOptions& o, bool progress) {
  R1_CHECK(o.hidden_size % o.heads == 0 && o.heads % o.kv_heads == 0,
           "pretrain: hidden_size must divide by heads and heads by kv_heads");
  if (o.threads > 0) at::set_num_threads(static_cast<int>(o.threads));
  const auto t0 = std::chrono::steady_clock::now();
  Tokenizer tok = Tokenizer::load(fs::path(o.tokenizer) / "tokenizer.json");

  std::mt19937_64 rng(static_cast<uint64_t>(o.seed));
  fs::create_directories(o.data_dir);
  write_problems(fs::path(o.data_dir) / "rl_train.jsonl", rng, o.rl_problems, 0);
  write_problems(fs::path(o.data_dir) / "heldout.jsonl", rng, o.eval_problems, 1);

  // A token stream long enough for every step, documents separated by eos.
  const int64_t need = o.steps * o.batch * o.seq_len + 1;
  std::vector<int64_t> stream;
  stream.reserve(static_cast<size_t>(need));
  const TokenId eos = *tok.eos_id();
  while (static_cast<int64_t>(stream.size()) < need) {
    for (TokenId t : tok.encode(arith::document(rng, o.careless_rate))) stream.push_back(t);
    stream.push_back(eos);
  }

  CausalLM model(tiny_config(o, tok), at::TensorOptions().dtype(at::kFloat));
  init_weights(model, static_cast<uint64_t>(o.seed));
  model->train();
  std::vector<at::Tensor> params;
  for (auto& p : model->parameters()) params.push_back(p);
  ChunkedAdamW opt(params, torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(o.weight_decay));

  PretrainSummary sum;
  const bool tty = isatty(STDERR_FILENO);
  at::Tensor all = at::tensor(stream, at::kLong);
  for (int64_t step = 0; step < o.steps; ++step) {
    double lr = o.lr;
    if (step < o.warmup_steps)
      lr = o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
    else {
      const double p = static_cast<double>(step - o.warmup_steps) / std::max<double>(1.0, o.steps - o.warmup_steps);
      lr = o.lr * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * p)));
    }
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    // Consecutive windows of the stream: [batch, seq_len + 1].
    at::Tensor win = all.narrow(0, step * o.batch * o.seq_len, o.batch * o.seq_len + 1);
    at::Tensor x = win.narrow(0, 0, o.batch * o.seq_len).view({o.batch, o.seq_len});
    at::Tensor y = win.narrow(0, 1, o.batch * o.seq_len);
    at::Tensor h = model->hidden({x});
    auto lp = token_logprobs(h.reshape({-1, h.size(2)}), model->lm_head_weight(), y);
    at::Tensor loss = -lp.logprobs.mean();
    opt.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    opt.step();
    const double l = loss.item<double>();
    if (step == 0) sum.first_loss = l;
    sum.last_loss = l;
    sum.tokens += o.batch * o.seq_len;
    if (progress && (tty || step % 50 == 0 || step + 1 == o.steps)) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::string line = fmt::format("pretrain step {}/{} | loss {:.4f} | lr {:.2e} | {:.0f} tok/s", step + 1, o.steps,
                                     l, lr, static_cast<double>(sum.tokens) / secs);
      if (tty)
        fmt::print(stderr, "\r\033[K{}{}", line, step + 1 == o.steps ? "\n" : "");
      else
        fmt::print(stderr, "{}\n", line);
    }
  }
  save_pretrained(model, o.out, {.copy_tokenizer_from = o.tokenizer});
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

}  // namespace r1
