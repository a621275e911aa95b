// Hugging Face tokenizer.json compatible tokenizer (byte-level BPE: Qwen2/2.5/3, DeepSeek-V3/R1,
// Llama 3). Produces exactly the ids the `tokenizers` library produces. No LibTorch.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace r1 {

using TokenId = int32_t;

// How special-token text inside the input is treated.
enum class SpecialTokens {
  kAsText,  // "<|im_end|>" in user text is ordinary text (HF split_special_tokens=True); the default
  kParse,   // added/special tokens in the text become their ids (HF's default)
};

struct TokenizerOptions {
  // Use the hand-written matchers for the pre-tokenizer regexes they know (exact and fast); false
  // sends every regex through PCRE2 (for cross-checking and benchmarking).
  bool builtin_regex = true;
};

class Tokenizer {
 public:
  // Reads tokenizer.json, and tokenizer_config.json beside it when present (bos/eos/pad).
  // `path` is the tokenizer.json file or the folder holding it. Throws r1::Error naming the file
  // and the field for anything malformed or unsupported.
  static Tokenizer load(const std::filesystem::path& path, const TokenizerOptions& options = {});
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Never adds BOS/EOS (like tokenizers' encode(add_special_tokens=False)). Invalid UTF-8 in
  // `text` is first replaced by U+FFFD per maximal invalid subsequence (see docs/TOKENIZER.md).
  // Thread-safe.
  std::vector<TokenId> encode(std::string_view text, SpecialTokens special = SpecialTokens::kAsText) const;
  // Bytes of the tokens joined, invalid UTF-8 replaced by U+FFFD (tokenizers' ByteLevel decoder).
  // Throws r1::Error for an id outside the vocabulary.
  std::string decode(std::span<const TokenId> ids, bool skip_special = false) const;

  std::optional<TokenId> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(TokenId id) const;
  size_t vocab_size() const;          // one past the largest id, added tokens included
  bool has_id(TokenId id) const;      // a token (base or added) has this id: decode() accepts it
  bool is_special(TokenId id) const;  // an added token marked "special" (skipped by decode(skip_special))
  std::optional<TokenId> bos_id() const;
  std::optional<TokenId> eos_id() const;
  std::optional<TokenId> pad_id() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace r1
