// The math checker end to end on hostile text: extraction (boxed, tags, last number, LaTeX spans),
// parsing and evaluation of both answers, and the checker that combines them. Input: the gold
// answer, a newline, then the completion. Nothing may crash, leak, hang past the deadline or
// throw anything but DeadlineExceeded; a sample always comes back with a score in [0, 1].
#include <chrono>
#include <cstdint>
#include <string>

#include "fuzz/fuzz.hpp"
#include "rewards/builtin.hpp"
#include "rewards/math.hpp"

namespace {
using namespace r1::rewards;

const CheckerPtr& checker() {
  static const CheckerPtr c = make_math_checker(MathOptions{});
  return c;
}

void extract_and_compare(std::string_view gold, std::string_view completion, const Deadline& dl) {
  (void)math::gold_answer(gold);
  (void)math::first_number(completion);
  (void)math::extract_answer(completion, /*require_anchor=*/true);
  const auto found = math::extract_answer(completion);
  if (!found) return;
  try {
    const math::Parsed g = math::parse(gold, dl);
    const math::Parsed p = math::parse(found->text, dl);
    (void)math::to_string(p);
    // The verdict depends on the texts alone (random points are seeded): asking twice agrees.
    if (math::equivalent(g, p, dl) != math::equivalent(g, p, dl)) r1::fuzz::finding("math verdict changed");
  } catch (const DeadlineExceeded&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto [gold, completion] = r1::fuzz::split_line(in);
  const Deadline dl = Deadline::after(std::chrono::seconds(2));
  extract_and_compare(gold, completion, dl);

  Sample s;
  s.completion = std::string(completion);
  s.reference["answer"] = std::string(gold);
  try {
    const CheckResult r = checker()->check(s, Deadline::after(std::chrono::seconds(2)));
    if (!(r.score >= 0.0 && r.score <= 1.0)) r1::fuzz::finding("math score outside [0, 1]");
  } catch (const DeadlineExceeded&) {
  }
  return 0;
}
