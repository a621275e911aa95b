#include "rewards/lint.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "common/error.hpp"

namespace r1::rewards {

namespace {

// A think block then the answer block. A prompt that ends by opening the think block (R1-Zero's
// template) gets its continuation; any other gets both blocks whole.
std::string formatted(const std::string& prompt, const std::string& answer) {
  const auto end = prompt.find_last_not_of(" \t\n");
  const bool prefilled = end != std::string::npos && end >= 6 && prompt.compare(end - 6, 7, "<think>") == 0;
  return fmt::format("{}Let me work it out step by step. </think> <answer>{}</answer>", prefilled ? " " : "<think> ",
                     answer);
}

// Full marks: every part at its best, 1 (a length penalty's best is 0).
bool full_marks(const Scored& s, const RewardsConfig& cfg) {
  for (const auto& e : cfg.checkers) {
    const PartResult* p = s.part(e.part_name());
    if (!p || p->result.score < (e.checker == "length" ? 0.0 : 1.0)) return false;
  }
  return true;
}

// A wrong answer near the gold one: a number plus 1 (then also 7777), else the text with a suffix.
std::string wrong_answer(const std::string& gold) {
  try {
    size_t used = 0;
    const double x = std::stod(gold, &used);
    if (used == gold.size()) return fmt::format("{}", x == 7777 ? 7778.0 : x + 1 == 7777 ? x + 2 : x + 1);
  } catch (const std::exception&) {
  }
  return gold + " 7777";
}

double part_score(const Scored& s, const std::string& part) {
  const PartResult* p = s.part(part);
  return p ? p->result.score : 0.0;
}

std::string scores_of(const Scored& s) {
  std::string out = fmt::format("total {:.3g}", s.score);
  for (const auto& p : s.parts) out += fmt::format(", {} {:.3g}", p.name, p.result.score);
  return out;
}

}  // namespace

std::string gold_answer(const std::string& reference) {
  std::string g = reference;
  if (auto p = g.rfind("####"); p != std::string::npos) g = g.substr(p + 4);
  const auto b = g.find_first_not_of(" \t\n"), e = g.find_last_not_of(" \t\n");
  g = b == std::string::npos ? "" : g.substr(b, e - b + 1);
  g.erase(std::remove(g.begin(), g.end(), ','), g.end());  // "1,234" -> "1234"
  return g;
}

LintCompletions lint_completions(const LintProbe& p) {
  return {formatted(p.prompt, p.gold), "", p.prompt, formatted(p.prompt, wrong_answer(p.gold))};
}

bool LintReport::passed() const {
  return std::all_of(checks.begin(), checks.end(), [](const LintCheck& c) { return c.passed(); });
}

std::string LintReport::describe() const {
  std::string out;
  for (const auto& c : checks) {
    if (!c.skipped.empty()) {
      out += fmt::format("  skip {}: {}\n", c.name, c.skipped);
      continue;
    }
    out += fmt::format("  {} {}: {} ({} of {} probes failed)\n", c.passed() ? "ok  " : "FAIL", c.name, c.expect,
                       c.failed, c.probes);
    if (!c.passed()) out += fmt::format("       e.g. {}\n", c.example);
  }
  for (const auto& s : spread)
    out += fmt::format("  part {}: scores {:.3g} .. {:.3g}, mean {:.3g}\n", s.part, s.min, s.max, s.mean);
  out += fmt::format("  scoring: {:.3f} ms per completion\n", ms_per_sample);
  return out;
}

LintReport lint_rewards(RewardBackend& backend, const RewardsConfig& cfg, const std::vector<LintProbe>& probes,
                        const std::string& accuracy_part) {
  R1_CHECK(!probes.empty(), "reward lint: no probe prompts");
  std::vector<Sample> batch;
  for (const auto& p : probes) {
    const LintCompletions c = lint_completions(p);
    for (const std::string* text : {&c.gold, &c.empty, &c.echo, &c.format_only})
      batch.push_back({p.prompt, *text, p.reference, {}, std::nullopt});
  }
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Scored> scored = backend.score(batch);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  R1_CHECK(scored.size() == batch.size(), "reward lint: {} scores for {} samples", scored.size(), batch.size());
  std::string kind;
  for (const auto& e : cfg.checkers)
    if (e.part_name() == accuracy_part) kind = e.checker;
  const bool gold_applies = kind == "math";
  LintReport r;
  r.ms_per_sample = ms / static_cast<double>(batch.size());
  r.checks = {{"gold answer", "the reference answer, formatted, scores full marks on every part"},
              {"empty completion", fmt::format("scores < 1 on {} and below the gold answer", accuracy_part)},
              {"prompt echoed", fmt::format("scores < 1 on {} and below the gold answer", accuracy_part)},
              {"format only, wrong answer", fmt::format("scores < 1 on {} and below the gold answer", accuracy_part)}};
  if (!gold_applies)
    r.checks[0].skipped = fmt::format("the accuracy part {} is checker {:?}, for which lint writes no gold completion",
                                      accuracy_part, kind);
  for (size_t i = 0; i < probes.size(); ++i) {
    const Scored& gold = scored[4 * i];
    for (size_t k = gold_applies ? 0 : 1; k < 4; ++k) {
      const Scored& s = scored[4 * i + k];
      const bool ok =
          k == 0 ? full_marks(s, cfg) : part_score(s, accuracy_part) < 1.0 && (!gold_applies || s.score < gold.score);
      LintCheck& c = r.checks[k];
      ++c.probes;
      if (!ok && c.failed++ == 0)
        c.example =
            fmt::format("{:?} for {:?}: {}", batch[4 * i + k].completion.substr(0, 120), probes[i].gold, scores_of(s));
    }
  }
  std::map<std::string, std::vector<double>> parts;
  for (const auto& s : scored)
    for (const auto& p : s.parts) parts[p.name].push_back(p.result.score);
  for (const auto& [name, v] : parts) {
    double sum = 0;
    for (double x : v) sum += x;
    r.spread.push_back({name, *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()),
                        sum / static_cast<double>(v.size())});
  }
  return r;
}

}  // namespace r1::rewards
