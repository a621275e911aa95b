// UTF-8 validity and repair (the Unicode standard's "substitution of maximal subparts"), shared by
// the tokenizer and by every text r1 writes as JSON (reward reasons, answers, logs), which must be
// valid UTF-8 whatever a checker, a plugin or a sandboxed program produced.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace r1::utf8 {

// Length of the longest valid UTF-8 prefix of `s` (== s.size() when all of it is valid).
size_t valid_prefix(std::string_view s);

// `s` with every maximal invalid subsequence replaced by U+FFFD.
std::string repair(std::string_view s);

// `s` cut to at most `max_bytes` bytes, at a code point boundary of valid UTF-8.
std::string_view truncate(std::string_view s, size_t max_bytes);

}  // namespace r1::utf8
