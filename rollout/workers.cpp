#include "rollout/workers.hpp"

#include <chrono>

#include "common/error.hpp"

namespace r1 {

RolloutPool::RolloutPool(RolloutOptions options, SamplingOptions sampling, Parts parts)
    : options_(options), sampling_(std::move(sampling)), parts_(std::move(parts)) {
  R1_CHECK(parts_.make_model && parts_.dataset && parts_.weights && parts_.reward && parts_.tokenizer,
           "rollout pool: model factory, tokenizer, dataset, weight store and reward stage are all required");
  R1_CHECK(options_.group_size <= options_.max_batch, "rollout: group_size {} exceeds max_batch {}",
           options_.group_size, options_.max_batch);
}

RolloutPool::~RolloutPool() { stop(); }

void RolloutPool::start() {
  R1_CHECK(parts_.weights->latest(), "rollout: publish the initial weights before starting the workers");
  for (int64_t w = 0; w < options_.workers; ++w)
    engines_.push_back(std::make_unique<Engine>(parts_.make_model(w), parts_.tokenizer,
                                                EngineOptions{.max_batch = options_.max_batch}));
  for (int64_t w = 0; w < options_.workers; ++w) threads_.emplace_back([this, w] { worker_loop(w); });
  threads_.emplace_back([this] { reward_loop(); });
}

void RolloutPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

uint64_t RolloutPool::publish(torch::nn::Module& trainer_model, int64_t version) {
  uint64_t checksum = parts_.weights->publish(trainer_model, version);
  { std::lock_guard<std::mutex> lock(mu_); }  // order the publish before waiters re-check
  cv_.notify_all();
  return checksum;
}

void RolloutPool::fail_all(std::exception_ptr e) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!error_) error_ = e;
  stopping_ = true;
  cv_.notify_all();
}

void RolloutPool::worker_loop(int64_t w) {
  try {
    Engine& engine = *engines_[w];
    int64_t installed = -1;
    while (true) {
      // Claim the next batch of prompts, waiting for buffer space and fresh enough weights.
      std::vector<PromptRecord> prompts;
      int64_t first_seq = 0;
      std::shared_ptr<const WeightSnapshot> snap;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] {
          if (stopping_) return true;
          const int64_t buffered = static_cast<int64_t>(to_score_.size() + ready_.size());
          const int64_t step = next_sequence_ / options_.prompts_per_step;
          return buffered < options_.queue_groups && parts_.weights->version() >= step - options_.max_policy_lag;
        });
        if (stopping_) return;
        first_seq = next_sequence_;
        // A batch never spans two steps, so every group of a step meets that step's version rule.
        const int64_t step_end = (first_seq / options_.prompts_per_step + 1) * options_.prompts_per_step;
        const int64_t n = std::min(options_.prompts_per_batch, step_end - first_seq);
        for (int64_t i = 0; i < n; ++i) prompts.push_back(parts_.dataset->next());
        next_sequence_ += n;
        snap = parts_.weights->latest();
      }
      install_weights(*engine.model(), *snap, &installed);

      auto t0 = std::chrono::steady_clock::now();
      std::vector<GenerationRequest> reqs;
      std::vector<std::vector<TokenId>> ids;
      for (const auto& p : prompts) {
        ids.push_back(parts_.tokenizer->encode(p.prompt));
        reqs.push_back({ids.back(), options_.group_size, static_cast<uint64_t>(p.index)});
      }
      std::vector<Completion> all = engine.generate(reqs, sampling_);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

      std::vector<ScoredGroup> groups(prompts.size());
      for (size_t i = 0; i < prompts.size(); ++i) {
        ScoredGroup& g = groups[i];
        g.sequence = first_seq + static_cast<int64_t>(i);
        g.worker = w;
        g.policy_version = installed;
        g.prompt = prompts[i];
        g.prompt_ids = ids[i];
        g.generate_seconds = secs / static_cast<double>(prompts.size());
      }
      for (auto& c : all) groups[c.request].completions.push_back(std::move(c));
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& g : groups) to_score_.push_back(std::move(g));
      }
      cv_.notify_all();
    }
  } catch (...) {
    fail_all(std::current_exception());
  }
}

void RolloutPool::reward_loop() {
  try {
    while (true) {
      ScoredGroup g;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !to_score_.empty(); });
        if (stopping_) return;
        g = std::move(to_score_.front());
        to_score_.pop_front();
      }
      auto t0 = std::chrono::steady_clock::now();
      parts_.reward(g);
      g.reward_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      R1_CHECK(g.rewards.size() == g.completions.size(), "reward stage returned {} rewards for {} completions",
               g.rewards.size(), g.completions.size());
      {
        std::lock_guard<std::mutex> lock(mu_);
        int64_t seq = g.sequence;
        ready_.emplace(seq, std::move(g));
      }
      cv_.notify_all();
    }
  } catch (...) {
    fail_all(std::current_exception());
  }
}

std::vector<ScoredGroup> RolloutPool::take_step(int64_t step) {
  const int64_t first = step * options_.prompts_per_step, last = first + options_.prompts_per_step;
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] {
    if (error_) return true;
    for (int64_t s = first; s < last; ++s)
      if (!ready_.count(s)) return false;
    return true;
  });
  if (error_) std::rethrow_exception(error_);
  std::vector<ScoredGroup> out;
  for (int64_t s = first; s < last; ++s) {
    auto it = ready_.find(s);
    out.push_back(std::move(it->second));
    ready_.erase(it);
  }
  lock.unlock();
  cv_.notify_all();
  return out;
}

EngineStats RolloutPool::engine_stats() const {
  EngineStats total;
  for (const auto& e : engines_) {
    const auto& s = e->stats();
    total.prefill_tokens += s.prefill_tokens;
    total.decode_tokens += s.decode_tokens;
    total.decode_steps += s.decode_steps;
    total.compactions += s.compactions;
    total.prefill_seconds += s.prefill_seconds;
    total.decode_seconds += s.decode_seconds;
  }
  return total;
}

}  // namespace r1
