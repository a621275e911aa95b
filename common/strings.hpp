// Small string helpers shared by components that must not pull in TOML++ (metrics, rewards, cli).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace r1 {

// `s` without leading and trailing ASCII whitespace.
std::string trim(std::string_view s);

// Levenshtein distance between two strings (byte-wise).
size_t edit_distance(std::string_view a, std::string_view b);

// The closest candidate to `word` within a small edit distance, or "" when none is close: used to
// add "did you mean 'x'?" to errors about unknown keys, checkers and metric names.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace r1
