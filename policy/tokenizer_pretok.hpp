// Pre-tokenizer splitting: pattern matchers (hand-written ones for the regexes real byte-level BPE
// tokenizers ship, PCRE2 for any other) and the `Split` behaviours of Hugging Face tokenizers.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace r1::tok {

struct Span {
  uint32_t begin, end;  // byte offsets, end exclusive
};

// Finds the non-overlapping matches of one pattern, left to right, like a regex engine's find_iter.
class Matcher {
 public:
  virtual ~Matcher() = default;
  // Appends the matches in `text` to `out`, offsets relative to `text`; empty matches are omitted.
  virtual void find_all(std::string_view text, std::vector<Span>& out) const = 0;
  virtual const char* engine() const = 0;  // "builtin", "pcre2" or "literal"
};

// A matcher for an Oniguruma regex from tokenizer.json. The regexes of Qwen2/2.5/3, Llama 3,
// GPT-2 (ByteLevel use_regex) and DeepSeek-V3 get exact hand-written matchers unless
// `allow_builtin` is false; anything else is compiled with PCRE2 (UTF + Unicode properties).
// `where` names the JSON field in errors.
std::unique_ptr<Matcher> make_regex_matcher(const std::string& pattern, bool allow_builtin, const std::string& where);
std::unique_ptr<Matcher> make_literal_matcher(std::string literal);
// Each \p{N} code point is one match (the `Digits` pre-tokenizer: Rust's char::is_numeric).
std::unique_ptr<Matcher> make_numeric_matcher();

// The GPT-2 regex ByteLevel uses when use_regex is true.
extern const char* const kGpt2Pattern;

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct SplitStep {
  std::shared_ptr<const Matcher> matcher;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

// Splits every piece `in` of `text` by `step`, appending the non-empty resulting pieces to `out`.
void apply_split(const SplitStep& step, std::string_view text, const std::vector<Span>& in, std::vector<Span>& out);

}  // namespace r1::tok
