// Unicode helpers for the tokenizer: UTF-8 decoding and repair, per-code-point class flags (the
// classes the pre-tokenizer regexes use) and Unicode normalization forms (utf8proc).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace r1::tok {

// Class bits of one code point. kWhite is Unicode White_Space, which is what `\s` means in the
// Oniguruma regexes of tokenizers and in Rust's char::is_whitespace.
enum CpFlag : uint8_t {
  kLetter = 1,     // \p{L}
  kNumber = 2,     // \p{N}
  kPunct = 4,      // \p{P}
  kSymbol = 8,     // \p{S}
  kMark = 16,      // \p{M}
  kWhite = 32,     // \s
  kNfcInert = 64,  // never changed by NFC and never combines with its neighbours
  kWord = 128,     // Rust regex \w (single_word added tokens)
};

// Flags of `cp` (0 for code points past U+10FFFF).
uint8_t cp_flags(uint32_t cp);

// Decodes the code point starting at s[i] of *valid* UTF-8 and advances i past it.
inline uint32_t next_cp(std::string_view s, size_t& i) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) {
    ++i;
    return b;
  }
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
  uint32_t cp;
  if (b < 0xE0) {
    cp = ((b & 0x1Fu) << 6) | at(1);
    i += 2;
  } else if (b < 0xF0) {
    cp = ((b & 0x0Fu) << 12) | (at(1) << 6) | at(2);
    i += 3;
  } else {
    cp = ((b & 0x07u) << 18) | (at(1) << 12) | (at(2) << 6) | at(3);
    i += 4;
  }
  return cp;
}

// Decodes the code point ending just before s[i] of valid UTF-8 and moves i back to its start.
inline uint32_t prev_cp(std::string_view s, size_t& i) {
  size_t j = i - 1;
  while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
  size_t k = j;
  uint32_t cp = next_cp(s, k);
  i = j;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp);

enum class NormForm { kNFC, kNFD, kNFKC, kNFKD };

// Normalizes valid UTF-8 `in` into `out`. Returns false, leaving `out` untouched, when `in` is
// already in that form (checked cheaply first, so the common case copies nothing).
bool normalize(NormForm form, std::string_view in, std::string& out);

}  // namespace r1::tok
