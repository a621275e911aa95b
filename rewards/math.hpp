// Math answers: extraction from free text and equivalence of two answers, with no computer
// algebra system. Answers are parsed (LaTeX or plain) into a small expression tree; numbers stay
// exact rationals while they fit in 128 bits and fall back to an extended-range float (so 1/2004!
// and 1/2006! still differ); expressions with variables are compared at random points. Work is
// bounded (answer length, nesting depth, exponent size) and checks the cooperative deadline.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rewards/deadline.hpp"

namespace r1::rewards::math {

struct Extracted {
  std::string text;  // the answer text, as found
  std::string rule;  // boxed, answer_tag, final_answer, answer_is, gsm8k, latex, number
};

// The answer a completion gives, by priority: the last \boxed{}/\fbox{} (several boxes in one
// math span form a set), <answer> tags, "final answer is", "the answer is", "####", the last
// LaTeX math span, the last number or simple expression. nullopt when nothing qualifies.
std::optional<Extracted> extract_answer(std::string_view completion, bool require_anchor = false);

// The first number in a text ("72 dollars per day" -> "72"), for anchored sentences that do not
// parse as a whole.
std::optional<std::string> first_number(std::string_view text);

// The gold answer of a reference field: the text after "####", the last \boxed{}, or all of it.
std::string gold_answer(std::string_view reference);

struct Expr;  // parsed answer (opaque)
struct Parsed {
  std::shared_ptr<const Expr> expr;  // null when the text did not parse
  std::string normalized;            // normalized text, compared as a string fallback
  std::string error;                 // why it did not parse
};

struct Limits {
  size_t max_chars = 1000;
  int max_depth = 100;
  int float_rounding = 6;
  int random_points = 6;
};

Parsed parse(std::string_view answer, const Deadline& dl, const Limits& lim = {});

// Math-Verify's `verify(gold, pred)` semantics (asymmetric: x = 5 as gold accepts 5).
bool equivalent(const Parsed& gold, const Parsed& pred, const Deadline& dl, const Limits& lim = {});

// Convenience: parse both texts (already-extracted answers) and compare.
bool equivalent_text(std::string_view gold, std::string_view pred, const Deadline& dl = {}, const Limits& lim = {});

// A compact rendering of a parsed answer (for reasons and debugging).
std::string to_string(const Parsed& p);

}  // namespace r1::rewards::math
