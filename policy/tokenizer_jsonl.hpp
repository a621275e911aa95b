// JSONL front end of the tokenizer (`r1 tokenize`): one JSON object per line in, one out.
#pragma once
#include <cstddef>
#include <iosfwd>
#include <string>

#include "policy/tokenizer.hpp"

namespace r1 {

struct TokenizeJsonlOptions {
  bool decode = false;                             // {"ids": [...]} -> {"text": ...} instead of the reverse
  SpecialTokens special = SpecialTokens::kAsText;  // encoding: how special-token text in "text" is read
  bool skip_special = false;                       // decoding: drop special tokens
  std::string source = "stdin";                    // names the input in errors
};

// Encodes each line {"text": "..."} to {"ids": [...]} (or decodes, see options). Blank lines are
// skipped; any other line that is not such an object throws r1::Error naming source:line.
// Returns the number of lines written.
size_t tokenize_jsonl(std::istream& in, std::ostream& out, const Tokenizer& tokenizer,
                      const TokenizeJsonlOptions& options = {});

}  // namespace r1
