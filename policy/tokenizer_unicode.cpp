#include "policy/tokenizer_unicode.hpp"

#include <utf8proc.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "common/error.hpp"

namespace r1::tok {
namespace {

constexpr uint32_t kMaxCp = 0x110000;

bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

uint8_t compute_flags(uint32_t cp) {
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
  uint8_t f = 0;
  switch (p->category) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: f |= kLetter | kWord; break;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: f |= kMark | kWord; break;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: f |= kNumber | kWord; break;
    case UTF8PROC_CATEGORY_NO: f |= kNumber; break;
    case UTF8PROC_CATEGORY_PC: f |= kPunct | kWord; break;
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO: f |= kPunct; break;
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO: f |= kSymbol; break;
    default: break;
  }
  if (cp == 0x200C || cp == 0x200D) f |= kWord;  // Join_Control
  if (is_white_space(cp)) f |= kWhite;
  // NFC leaves a code point alone, whatever surrounds it, when it is a starter (ccc 0) without a
  // canonical decomposition that cannot be the second half of a composition (Hangul V/T jamo are
  // composed algorithmically, so they are excluded by range).
  bool canonical_decomp = p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0;
  bool second = p->comb_index != UINT16_MAX && p->comb_index >= 0x8000;
  bool jamo_vt = cp >= 0x1160 && cp <= 0x11FF;
  if (p->combining_class == 0 && !canonical_decomp && !second && !jamo_vt) f |= kNfcInert;
  return f;
}

const uint8_t* flag_table() {
  static const std::unique_ptr<uint8_t[]> table = [] {
    auto t = std::make_unique<uint8_t[]>(kMaxCp);
    for (uint32_t cp = 0; cp < kMaxCp; ++cp) t[cp] = compute_flags(cp);
    return t;
  }();
  return table.get();
}

}  // namespace

uint8_t cp_flags(uint32_t cp) {
  static const uint8_t* table = flag_table();
  return cp < kMaxCp ? table[cp] : 0;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {}  // namespace

bool normalize(NormForm form, std::string_view in, std::string& out) {
  // Pure ASCII is invariant under every normalization form.
  bool ascii = true;
  for (char c : in) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return false;
  if (form == NormForm::kNFC) {
    bool inert = true;
    for (size_t i = 0; i < in.size() && inert;) inert = (cp_flags(next_cp(in, i)) & kNfcInert) != 0;
    if (inert) return false;
  }
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormForm::kNFC: options |= UTF8PROC_COMPOSE; break;
    case NormForm::kNFD: options |= UTF8PROC_DECOMPOSE; break;
    case NormForm::kNFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormForm::kNFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* result = nullptr;
  utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(in.data()), static_cast<utf8proc_ssize_t>(in.size()),
                   &result, static_cast<utf8proc_option_t>(options));
  if (n < 0) fail("tokenizer: Unicode normalization failed: {}", utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> hold(result, &std::free);
  std::string_view norm(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
  if (norm == in) return false;
  out.assign(norm);
  return true;
}

}  // namespace r1::tok
