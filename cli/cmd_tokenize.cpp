// r1 tokenize: JSONL on stdin, one object per line: {"text": ...} -> {"ids": [...]}, or the reverse
// with --decode. The work is in policy/tokenizer_jsonl.cpp.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.hpp"
#include "policy/tokenizer.hpp"
#include "policy/tokenizer_jsonl.hpp"

namespace r1::cli {

void add_tokenize(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("tokenize", "Encode JSONL {\"text\": ...} lines from stdin to {\"ids\": [...]} (or decode)");
  struct Args {
    std::string tokenizer;
    bool decode = false, parse_special = false, skip_special = false;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.json, or the folder holding it")->required();
  cmd->add_flag("--decode", args->decode, "read {\"ids\": [...]} lines and write {\"text\": ...}");
  cmd->add_flag("--parse-special", args->parse_special,
                "turn special-token text such as <|im_end|> into its id (default: encode it as plain text)");
  cmd->add_flag("--skip-special", args->skip_special, "with --decode: leave special tokens out");
  cmd->callback([args] {
    Tokenizer tok = Tokenizer::load(args->tokenizer);
    TokenizeJsonlOptions opt;
    opt.decode = args->decode;
    opt.special = args->parse_special ? SpecialTokens::kParse : SpecialTokens::kAsText;
    opt.skip_special = args->skip_special;
    std::ios::sync_with_stdio(false);
    tokenize_jsonl(std::cin, std::cout, tok, opt);
  });
}

}  // namespace r1::cli
