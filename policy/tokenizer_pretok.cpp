#include "policy/tokenizer_pretok.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "common/error.hpp"
#include "policy/tokenizer_unicode.hpp"

namespace r1::tok {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

// ---- Hand-written matchers -------------------------------------------------------------------
//
// Each reproduces, alternative by alternative, what a backtracking engine (Oniguruma, as used by
// tokenizers) does for one regex: at a position the alternatives are tried in order and the first
// that matches wins; the search then resumes after the match. Code points are decoded once per
// piece into thread-local arrays, so matching allocates nothing in steady state.

struct Decoded {
  std::vector<uint32_t> cp;
  std::vector<uint8_t> fl;
  std::vector<uint32_t> off;  // byte offset of each code point, plus the end
  size_t n = 0;
};

Decoded& decode(std::string_view text) {
  thread_local Decoded d;
  d.cp.clear();
  d.fl.clear();
  d.off.clear();
  for (size_t i = 0; i < text.size();) {
    d.off.push_back(static_cast<uint32_t>(i));
    uint32_t c = next_cp(text, i);
    d.cp.push_back(c);
    d.fl.push_back(cp_flags(c));
  }
  d.off.push_back(static_cast<uint32_t>(text.size()));
  d.n = d.cp.size();
  return d;
}

inline bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

// The shared whitespace tail: [\s*[\r\n]+ |] \s+(?!\S) | \s+ .
size_t match_space(const Decoded& d, size_t i, bool newline_alt) {
  if (!(d.fl[i] & kWhite)) return i;
  size_t e = i;
  while (e < d.n && (d.fl[e] & kWhite)) ++e;
  if (newline_alt) {  // \s* backtracks to the last \r or \n of the run
    for (size_t j = e; j-- > i;)
      if (is_crlf(d.cp[j])) return j + 1;
  }
  if (e == d.n) return e;        // \s+(?!\S) at the end
  if (e - i >= 2) return e - 1;  // \s+(?!\S) gives back the space before a non-space
  return e;                      // \s+
}

// 's 't 're 've 'm 'll 'd, case-insensitively under Unicode simple case folding when `ci`
// (U+017F LATIN SMALL LETTER LONG S folds to s).
size_t match_contraction(const Decoded& d, size_t i, bool ci) {
  if (d.cp[i] != '\'' || i + 1 >= d.n) return i;
  auto fold = [ci](uint32_t c) -> uint32_t {
    if (!ci) return c;
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';
    return c;
  };
  uint32_t a = fold(d.cp[i + 1]);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
  if (i + 2 < d.n) {
    uint32_t b = fold(d.cp[i + 2]);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
  }
  return i;
}

size_t run(const Decoded& d, size_t i, uint8_t mask) {
  while (i < d.n && (d.fl[i] & mask)) ++i;
  return i;
}

inline bool other_class(uint8_t f) { return !(f & (kWhite | kLetter | kNumber)); }  // [^\s\p{L}\p{N}]

enum class Family { kQwen, kLlama3, kGpt2, kDeepSeek, kDigits3, kCjk };

class BuiltinMatcher final : public Matcher {
 public:
  explicit BuiltinMatcher(Family f) : family_(f) {}
  const char* engine() const override { return "builtin"; }

  void find_all(std::string_view text, std::vector<Span>& out) const override {
    if (text.empty()) return;
    const Decoded& d = decode(text);
    size_t i = 0;
    while (i < d.n) {
      size_t e = match_at(d, i);
      if (e > i) {
        out.push_back({d.off[i], d.off[e]});
        i = e;
      } else {
        ++i;
      }
    }
  }

 private:
  size_t match_at(const Decoded& d, size_t i) const {
    switch (family_) {
      case Family::kQwen: return match_cl100k(d, i, 1);
      case Family::kLlama3: return match_cl100k(d, i, 3);
      case Family::kGpt2: return match_gpt2(d, i);
      case Family::kDeepSeek: return match_deepseek(d, i);
      case Family::kDigits3: {
        size_t e = i;
        while (e < d.n && e - i < 3 && (d.fl[e] & kNumber)) ++e;
        return e;
      }
      case Family::kCjk: {
        size_t e = i;
        while (e < d.n && is_cjk(d.cp[e])) ++e;
        return e;
      }
    }
    return i;
  }

  static bool is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x309F) || (c >= 0x30A0 && c <= 0x30FF);
  }

  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}
  //   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  static size_t match_cl100k(const Decoded& d, size_t i, size_t max_digits) {
    size_t e = match_contraction(d, i, true);
    if (e > i) return e;
    const uint32_t c = d.cp[i];
    const uint8_t f = d.fl[i];
    if (f & kLetter) return run(d, i, kLetter);
    if (!(f & kNumber) && !is_crlf(c) && i + 1 < d.n && (d.fl[i + 1] & kLetter)) return run(d, i + 1, kLetter);
    if (f & kNumber) {
      e = i;
      while (e < d.n && e - i < max_digits && (d.fl[e] & kNumber)) ++e;
      return e;
    }
    size_t j = (c == ' ' && i + 1 < d.n && other_class(d.fl[i + 1])) ? i + 1 : i;
    if (other_class(d.fl[j])) {
      while (j < d.n && other_class(d.fl[j])) ++j;
      while (j < d.n && is_crlf(d.cp[j])) ++j;
      return j;
    }
    return match_space(d, i, true);
  }

  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  static size_t match_gpt2(const Decoded& d, size_t i) {
    size_t e = match_contraction(d, i, false);
    if (e > i) return e;
    const bool sp = d.cp[i] == ' ' && i + 1 < d.n;
    for (uint8_t cls : {kLetter, kNumber}) {
      size_t j = (sp && (d.fl[i + 1] & cls)) ? i + 1 : i;
      if (d.fl[j] & cls) return run(d, j, cls);
    }
    size_t j = (sp && other_class(d.fl[i + 1])) ? i + 1 : i;
    if (other_class(d.fl[j])) {
      while (j < d.n && other_class(d.fl[j])) ++j;
      return j;
    }
    return match_space(d, i, false);
  }

  // [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
  //   | ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  static size_t match_deepseek(const Decoded& d, size_t i) {
    auto ascii_alpha = [](uint32_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
    auto ascii_punct = [](uint32_t c) {
      return c < 0x80 && std::strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", static_cast<int>(c)) && c != 0;
    };
    const uint32_t c = d.cp[i];
    const uint8_t f = d.fl[i];
    if (ascii_punct(c) && i + 1 < d.n && ascii_alpha(d.cp[i + 1])) {
      size_t e = i + 1;
      while (e < d.n && ascii_alpha(d.cp[e])) ++e;
      return e;
    }
    constexpr uint8_t kLM = kLetter | kMark;
    constexpr uint8_t kPS = kPunct | kSymbol;
    if (!(f & (kLetter | kPS)) && !is_crlf(c) && i + 1 < d.n && (d.fl[i + 1] & kLM)) return run(d, i + 1, kLM);
    if (f & kLM) return run(d, i, kLM);
    size_t j = (c == ' ' && i + 1 < d.n && (d.fl[i + 1] & kPS)) ? i + 1 : i;
    if (d.fl[j] & kPS) {
      j = run(d, j, kPS);
      while (j < d.n && is_crlf(d.cp[j])) ++j;
      return j;
    }
    return match_space(d, i, true);
  }

  Family family_;
};

// The known patterns, as they read after JSON decoding (literal CR/LF written as \r, \n).
struct KnownPattern {
  const char* pattern;
  Family family;
};
const KnownPattern kKnown[] = {
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*)"
     R"(|\s*[\r\n]+|\s+(?!\S)|\s+)",
     Family::kQwen},
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)"
     R"(|\s*[\r\n]+|\s+(?!\S)|\s+)",
     Family::kLlama3},
    {R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", Family::kGpt2},
    {R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)"
     R"(| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     Family::kDeepSeek},
    {R"(\p{N}{1,3})", Family::kDigits3},
    {"[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+", Family::kCjk},
};

// ---- PCRE2 ------------------------------------------------------------------------------------

// Oniguruma's \uXXXX escape is PCRE2's \x{XXXX}.
std::string to_pcre2_syntax(const std::string& p) {
  std::string out;
  out.reserve(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      if (p[i + 1] == 'u' && i + 6 <= p.size()) {
        bool hex = true;
        for (size_t k = i + 2; k < i + 6; ++k) hex = hex && std::isxdigit(static_cast<unsigned char>(p[k]));
        if (hex) {
          out += "\\x{" + p.substr(i + 2, 4) + "}";
          i += 5;
          continue;
        }
      }
      out += p[i];
      out += p[i + 1];
      ++i;
      continue;
    }
    out += p[i];
  }
  return out;
}

class Pcre2Matcher final : public Matcher {
 public:
  Pcre2Matcher(const std::string& pattern, const std::string& where) {
    std::string p = to_pcre2_syntax(pattern);
    int err = 0;
    PCRE2_SIZE at = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), PCRE2_UTF | PCRE2_UCP, &err, &at, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("{}: regex {:?} is not supported (at offset {}: {})", where, pattern, at, reinterpret_cast<char*>(msg));
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Pcre2Matcher() override { pcre2_code_free(code_); }
  Pcre2Matcher(const Pcre2Matcher&) = delete;
  Pcre2Matcher& operator=(const Pcre2Matcher&) = delete;
  const char* engine() const override { return "pcre2"; }

  void find_all(std::string_view text, std::vector<Span>& out) const override {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
    auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0;
    while (pos <= text.size()) {
      // The text is valid UTF-8 (checked on entry to encode), so the check is skipped.
      int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), pos, 0, md.get(), nullptr)
                    : pcre2_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) fail("tokenizer: regex match failed (PCRE2 error {})", rc);
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      size_t b = ov[0], e = ov[1];
      if (e > b) {
        out.push_back({static_cast<uint32_t>(b), static_cast<uint32_t>(e)});
        pos = e;
      } else {  // an empty match: step over one code point
        if (b >= text.size()) break;
        pos = b + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      }
    }
  }

 private:
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

class LiteralMatcher final : public Matcher {
 public:
  explicit LiteralMatcher(std::string lit) : lit_(std::move(lit)) {}
  const char* engine() const override { return "literal"; }
  void find_all(std::string_view text, std::vector<Span>& out) const override {
    if (lit_.empty()) return;
    for (size_t pos = text.find(lit_); pos != std::string_view::npos; pos = text.find(lit_, pos + lit_.size()))
      out.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(pos + lit_.size())});
  }

 private:
  std::string lit_;
};

class NumericMatcher final : public Matcher {
 public:
  const char* engine() const override { return "builtin"; }
  void find_all(std::string_view text, std::vector<Span>& out) const override {
    for (size_t i = 0; i < text.size();) {
      size_t b = i;
      if (cp_flags(next_cp(text, i)) & kNumber) out.push_back({static_cast<uint32_t>(b), static_cast<uint32_t>(i)});
    }
  }
};

}  // namespace

std::unique_ptr<Matcher> make_regex_matcher(const std::string& pattern, bool allow_builtin, const std::string& where) {
  if (allow_builtin) {
    std::string canon;
    canon.reserve(pattern.size());
    for (char c : pattern) {
      if (c == '\r')
        canon += "\\r";
      else if (c == '\n')
        canon += "\\n";
      else
        canon += c;
    }
    for (const auto& k : kKnown)
      if (canon == k.pattern) return std::make_unique<BuiltinMatcher>(k.family);
  }
  return std::make_unique<Pcre2Matcher>(pattern, where);
}

std::unique_ptr<Matcher> make_literal_matcher(std::string literal) {
  return std::make_unique<LiteralMatcher>(std::move(literal));
}

std::unique_ptr<Matcher> make_numeric_matcher() { return std::make_unique<NumericMatcher>(); }

void apply_split(const SplitStep& step, std::string_view text, const std::vector<Span>& in, std::vector<Span>& out) {
  thread_local std::vector<Span> matches;
  struct Part {
    Span s;
    bool match;
  };
  thread_local std::vector<Part> parts;
  thread_local std::vector<Part> merged;
  for (const Span& piece : in) {
    matches.clear();
    step.matcher->find_all(text.substr(piece.begin, piece.end - piece.begin), matches);
    // The piece as alternating gaps and matches, covering it entirely.
    parts.clear();
    uint32_t at = piece.begin;
    for (const Span& m : matches) {
      Span abs{piece.begin + m.begin, piece.begin + m.end};
      if (abs.begin > at) parts.push_back({{at, abs.begin}, step.invert});
      parts.push_back({abs, !step.invert});
      at = abs.end;
    }
    if (at < piece.end) parts.push_back({{at, piece.end}, step.invert});

    // Tokenizers' SplitDelimiterBehavior, as in NormalizedString::split.
    merged.clear();
    bool prev_match = false;
    switch (step.behavior) {
      case SplitBehavior::kIsolated: merged = parts; break;
      case SplitBehavior::kRemoved:
        for (const Part& p : parts)
          if (!p.match) merged.push_back(p);
        break;
      case SplitBehavior::kMergedWithPrevious:
        for (const Part& p : parts) {
          if (p.match && !prev_match && !merged.empty())
            merged.back().s.end = p.s.end;
          else
            merged.push_back(p);
          prev_match = p.match;
        }
        break;
      case SplitBehavior::kMergedWithNext:
        for (size_t k = parts.size(); k-- > 0;) {
          const Part& p = parts[k];
          if (p.match && !prev_match && !merged.empty())
            merged.back().s.begin = p.s.begin;
          else
            merged.push_back(p);
          prev_match = p.match;
        }
        std::reverse(merged.begin(), merged.end());
        break;
      case SplitBehavior::kContiguous:
        for (size_t k = 0; k < parts.size(); ++k) {
          const Part& p = parts[k];
          if (k > 0 && p.match == prev_match)
            merged.back().s.end = p.s.end;
          else
            merged.push_back(p);
          prev_match = p.match;
        }
        break;
    }
    for (const Part& p : merged)
      if (p.s.end > p.s.begin) out.push_back(p.s);
  }
}

}  // namespace r1::tok
