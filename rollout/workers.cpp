#include "rollout/workers.hpp"

#include <chrono>

#include "common/error.hpp"
#include "policy/device.hpp"

namespace r1 {

RolloutPool::RolloutPool(RolloutOptions options, SamplingOptions sampling, Parts parts)
    : options_(options), sampling_(std::move(sampling)), parts_(std::move(parts)) {
  R1_CHECK(parts_.make_model && parts_.dataset && parts_.weights && parts_.reward && parts_.tokenizer,
           "rollout pool: model factory, tokenizer, dataset, weight store and reward stage are all required");
  R1_CHECK(options_.group_size <= options_.max_batch, "rollout: group_size {} exceeds max_batch {}",
           options_.group_size, options_.max_batch);
}

RolloutPool::~RolloutPool() { stop(); }

void RolloutPool::start_at(int64_t sequence) {
  std::lock_guard<std::mutex> lock(mu_);
  R1_CHECK(threads_.empty() && requested_ == next_sequence_ && next_sequence_ == taken_,
           "rollout: start_at() must come before start() and any request");
  R1_CHECK(sequence >= 0, "rollout: start_at({})", sequence);
  requested_ = next_sequence_ = taken_ = sequence;
}

void RolloutPool::start() {
  for (int64_t w = 0; w < options_.workers; ++w)
    engines_.push_back(std::make_unique<Engine>(parts_.make_model(w), parts_.tokenizer, engine_options(options_)));
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
  uint64_t checksum = parts_.weights->publish(trainer_model, version, /*copy=*/!parts_.shared_model);
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

void RolloutPool::request(int64_t groups) {
  R1_CHECK(groups >= 0, "rollout: cannot request {} groups", groups);
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t v = parts_.weights->version();
    R1_CHECK(v >= 0, "rollout: publish weights before requesting groups");
    requested_ += groups;
    tickets_.push_back({requested_, v});
  }
  cv_.notify_all();
}

void RolloutPool::wait_generated() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return error_ || stopping_ || (next_sequence_ == requested_ && generating_ == 0); });
  if (error_) std::rethrow_exception(error_);
}

int64_t RolloutPool::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requested_ - taken_;
}

void RolloutPool::worker_loop(int64_t w) {
  try {
    if (parts_.threads > 0) pin_cpu_threads(static_cast<int>(parts_.threads));
    Engine& engine = *engines_[w];
    int64_t installed = -1;
    while (true) {
      // Claim the next prompts of the oldest open request.
      std::vector<PromptRecord> prompts;
      int64_t first_seq = 0, version = 0;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || next_sequence_ < requested_; });
        if (stopping_) return;
        while (tickets_.front().end <= next_sequence_) tickets_.pop_front();
        const Ticket& t = tickets_.front();
        first_seq = next_sequence_;
        version = t.version;
        const int64_t n = std::min(options_.prompts_per_batch, t.end - first_seq);
        for (int64_t i = 0; i < n; ++i) prompts.push_back(parts_.dataset->next());
        next_sequence_ += n;
        ++generating_;
      }
      if (parts_.shared_model) {
        installed = version;  // the trainer's module holds the newest version: nothing to install
      } else if (installed != version) {
        installed = -1;  // versions are pinned per request; a worker may go back to an older one
        install_weights(*engine.model(), *parts_.weights->get(version), &installed);
      }

      auto t0 = std::chrono::steady_clock::now();
      std::vector<GenerationRequest> reqs;
      std::vector<std::vector<TokenId>> ids;
      for (const auto& p : prompts) {
        ids.push_back(parts_.tokenizer->encode(p.prompt));
        const int64_t seq = first_seq + static_cast<int64_t>(reqs.size());
        reqs.push_back({ids.back(), options_.group_size,
                        static_cast<uint64_t>(seq * parts_.stream_stride + parts_.stream_offset)});
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
        --generating_;
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

std::vector<ScoredGroup> RolloutPool::take(int64_t n) {
  std::unique_lock<std::mutex> lock(mu_);
  R1_CHECK(taken_ + n <= requested_, "rollout: take({}) but only {} groups are requested and not taken", n,
           requested_ - taken_);
  const int64_t first = taken_, last = taken_ + n;
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
  taken_ = last;
  return out;
}

EngineStats RolloutPool::engine_stats() const {
  EngineStats total;
  for (const auto& e : engines_) {
    const auto& s = e->stats();
    total.prefill_tokens += s.prefill_tokens;
    total.decode_tokens += s.decode_tokens;
    total.decode_steps += s.decode_steps;
    total.prefill_calls += s.prefill_calls;
    total.kv_peak_blocks = std::max(total.kv_peak_blocks, s.kv_peak_blocks);
    total.kv_block_bytes = s.kv_block_bytes;
    total.kv_capacity_blocks += s.kv_capacity_blocks;
    total.prefill_seconds += s.prefill_seconds;
    total.decode_seconds += s.decode_seconds;
  }
  return total;
}

}  // namespace r1
