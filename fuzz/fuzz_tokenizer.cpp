// The tokenizer on arbitrary bytes: the real Qwen3 and DeepSeek-V3 tokenizers (../shared, or
// R1_SHARED_DIR) and the tiny model's. The first byte picks the tokenizer and the special-token
// mode; the rest is the text. Properties: every id is inside the vocabulary; decoding gives valid
// UTF-8; encoding what decoding gave returns the same ids; arbitrary ids decode without harm.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "common/utf8.hpp"
#include "fuzz/fuzz.hpp"
#include "policy/tokenizer.hpp"

namespace {
namespace fs = std::filesystem;
std::vector<r1::Tokenizer> g_tokenizers;

fs::path shared_dir() {
  if (const char* s = std::getenv("R1_SHARED_DIR")) return s;
  return fs::path(R1_SOURCE_DIR) / ".." / "shared";
}

void load_tokenizers() {
  const fs::path files[] = {fs::path(R1_SOURCE_DIR) / "models/tiny/tokenizer.json",
                            shared_dir() / "tokenizers/qwen3/tokenizer.json",
                            shared_dir() / "tokenizers/deepseek-v3/tokenizer.json"};
  for (const auto& f : files) {
    if (!fs::exists(f)) {
      std::fprintf(stderr, "fuzz_tokenizer: SKIPPING %s (missing)\n", f.c_str());
      continue;
    }
    g_tokenizers.push_back(r1::Tokenizer::load(f));
  }
  if (g_tokenizers.empty()) r1::fuzz::finding("no tokenizer to fuzz");
}

void check_ids(const r1::Tokenizer& tok, const std::vector<r1::TokenId>& ids) {
  for (auto id : ids)
    if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) r1::fuzz::finding("id outside the vocabulary");
}

// Arbitrary ids, 3 bytes each, folded into the vocabulary.
void decode_arbitrary(const r1::Tokenizer& tok, std::string_view bytes) {
  std::vector<r1::TokenId> ids;
  for (size_t i = 0; i + 3 <= bytes.size() && ids.size() < 512; i += 3) {
    const uint32_t v = uint8_t(bytes[i]) | uint8_t(bytes[i + 1]) << 8 | uint8_t(bytes[i + 2]) << 16;
    ids.push_back(static_cast<r1::TokenId>(v % tok.vocab_size()));
  }
  for (bool skip : {false, true}) {
    const std::string text = tok.decode(ids, skip);
    if (r1::utf8::valid_prefix(text) != text.size()) r1::fuzz::finding("decode gave invalid UTF-8");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  load_tokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const r1::Tokenizer& tok = g_tokenizers[data[0] % g_tokenizers.size()];
  const auto mode = (data[0] / 8) % 2 ? r1::SpecialTokens::kParse : r1::SpecialTokens::kAsText;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

  const auto ids = tok.encode(text, mode);
  check_ids(tok, ids);
  const std::string back = tok.decode(ids);
  if (r1::utf8::valid_prefix(back) != back.size()) r1::fuzz::finding("decode gave invalid UTF-8");
  if (mode == r1::SpecialTokens::kAsText && tok.encode(back, mode) != ids)
    r1::fuzz::finding("encode(decode(encode(s))) != encode(s)");
  decode_arbitrary(tok, text);
  return 0;
}
