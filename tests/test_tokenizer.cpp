// The tokenizer against Hugging Face tokenizers: parity fixtures (made by
// scripts/fixtures/make_tokenizer_fixtures.py) for Qwen3, DeepSeek-V3 and the tiny tokenizer in
// both special-token modes, round trips, invalid UTF-8, malformed files, the JSONL front end and
// concurrent use.
#include <doctest/doctest.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "common/error.hpp"
#include "common/json.hpp"
#include "policy/tokenizer.hpp"
#include "policy/tokenizer_jsonl.hpp"
#include "test_paths.hpp"

namespace fs = std::filesystem;
namespace bj = boost::json;
using r1::SpecialTokens;
using r1::TokenId;
using r1::Tokenizer;

namespace {

fs::path fixture_dir() { return r1::test::fixtures() / "tokenizer"; }

// The real tokenizers live in ../shared; their test cases carry needs_shared (kQwen3, kDeepSeek).
bool is_shared(const std::string& name) { return name == "qwen3" || name == "deepseek-v3"; }
const char* const kQwen3 = "tokenizers/qwen3/tokenizer.json";
const char* const kDeepSeek = "tokenizers/deepseek-v3/tokenizer.json";

// Where a tokenizer named in the fixtures lives: qwen3 and deepseek-v3 in ../shared, the tiny
// ones among the fixtures.
fs::path tokenizer_path(const std::string& name) {
  if (!is_shared(name)) return fixture_dir() / name;
  return r1::test::shared_file("tokenizers/" + name + "/tokenizer.json").parent_path();
}

const Tokenizer& cached(const std::string& name, bool builtin = true) {
  static std::map<std::pair<std::string, bool>, Tokenizer> loaded;
  auto key = std::make_pair(name, builtin);
  auto it = loaded.find(key);
  if (it == loaded.end()) {
    r1::TokenizerOptions opt;
    opt.builtin_regex = builtin;
    it = loaded.emplace(key, Tokenizer::load(tokenizer_path(name), opt)).first;
  }
  return it->second;
}

std::vector<bj::object> read_fixture(const std::string& file) {
  std::ifstream in(fixture_dir() / file);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << (fixture_dir() / file).string()
                                                << "; run scripts/fixtures/make_tokenizer_fixtures.py");
  std::vector<bj::object> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(r1::json::parse(line, file).as_object());
  return out;
}

std::vector<TokenId> ids_of(const bj::value& v) {
  std::vector<TokenId> out;
  for (const auto& x : v.as_array()) out.push_back(static_cast<TokenId>(x.as_int64()));
  return out;
}

std::string show(const std::vector<TokenId>& ids) { return fmt::format("[{}]", fmt::join(ids, ",")); }

std::string hex_to_bytes(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  return out;
}

struct Tally {
  size_t checked = 0, failed = 0;
};

// Every line of `file`, for the fixture's tokenizers that are real (`shared`) or tiny (`!shared`):
// both encode modes and decode give exactly what tokenizers gave. `input` maps a line to the bytes.
template <class Input>
void check_parity(const std::string& file, bool builtin, bool shared, Input input) {
  auto lines = read_fixture(file);
  REQUIRE(!lines.empty());
  int tokenizers = 0;
  for (const auto& kv : lines.front().at("ids").as_object()) {
    const std::string name(kv.key());
    if (is_shared(name) != shared) continue;
    ++tokenizers;
    const Tokenizer& tok = cached(name, builtin);
    Tally t;
    for (const bj::object& rec : lines) {
      std::string text(rec.at("text").as_string());
      std::string bytes = input(rec);
      const bj::object& ids = rec.at("ids").as_object();
      const bj::object& parse = rec.at("parse").as_object();
      const bj::object& decoded = rec.at("decoded").as_object();
      auto expect_plain = ids_of(ids.at(name));
      auto expect_parse = parse.contains(name) ? ids_of(parse.at(name)) : expect_plain;
      std::string expect_text = decoded.contains(name) ? std::string(decoded.at(name).as_string()) : text;
      std::string expect_text_parse = expect_text;
      if (const bj::value* dp = rec.if_contains("decoded_parse"); dp && dp->as_object().contains(name))
        expect_text_parse = std::string(dp->as_object().at(name).as_string());
      auto got_plain = tok.encode(bytes, SpecialTokens::kAsText);
      auto got_parse = tok.encode(bytes, SpecialTokens::kParse);
      std::string back_plain = tok.decode(got_plain), back_parse = tok.decode(got_parse);
      ++t.checked;
      bool ok = got_plain == expect_plain && got_parse == expect_parse && back_plain == expect_text &&
                back_parse == expect_text_parse;
      if (!ok && ++t.failed <= 3) {
        std::string escaped = bj::serialize(bj::value(text));
        CHECK_MESSAGE(got_plain == expect_plain, name << " as-text " << escaped << "\n got  " << show(got_plain)
                                                      << "\n want " << show(expect_plain));
        CHECK_MESSAGE(got_parse == expect_parse, name << " parse " << escaped << "\n got  " << show(got_parse)
                                                      << "\n want " << show(expect_parse));
        CHECK_MESSAGE(back_plain == expect_text, name << " decode(encode) " << escaped);
        CHECK_MESSAGE(back_parse == expect_text_parse, name << " decode(encode parse) " << escaped);
      }
    }
    MESSAGE(file << " " << name << std::string(builtin ? "" : " (pcre2)") << ": " << t.checked - t.failed << "/"
                 << t.checked << " lines identical");
    CHECK(t.failed == 0);
    CHECK(t.checked == lines.size());
  }
  CHECK(tokenizers > 0);
}

std::string plain_text(const bj::object& rec) { return std::string(rec.at("text").as_string()); }

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / fmt::format("r1_tok_{}_{}", name, ::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// The tiny tokenizer.json with one edit, in a fresh folder.
fs::path broken_copy(const std::string& name, const std::function<void(bj::object&)>& edit) {
  bj::value v = r1::json::parse_file(fixture_dir() / "tiny" / "tokenizer.json");
  edit(v.as_object());
  fs::path d = temp_dir(name);
  std::ofstream(d / "tokenizer.json") << bj::serialize(v);
  return d;
}

std::string load_error(const fs::path& p) {
  try {
    Tokenizer::load(p);
  } catch (const r1::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("tokenizer parity with Hugging Face tokenizers: corpus, tiny tokenizer") {
  check_parity("corpus.jsonl", true, false, plain_text);
}

TEST_CASE("tokenizer parity with Hugging Face tokenizers: corpus, Qwen3 and DeepSeek-V3" *
          r1::test::needs_shared(kQwen3) * r1::test::needs_shared(kDeepSeek)) {
  check_parity("corpus.jsonl", true, true, plain_text);
}

TEST_CASE("tokenizer parity with Hugging Face tokenizers: random strings, tiny tokenizer") {
  check_parity("random.jsonl", true, false, plain_text);
}

TEST_CASE("tokenizer parity with Hugging Face tokenizers: random strings, Qwen3 and DeepSeek-V3" *
          r1::test::needs_shared(kQwen3) * r1::test::needs_shared(kDeepSeek)) {
  check_parity("random.jsonl", true, true, plain_text);
}

TEST_CASE("tokenizer parity on other configurations: added-token flags, Llama 3 regex, GPT-2 ByteLevel") {
  check_parity("variants.jsonl", true, false, plain_text);
}

TEST_CASE("tokenizer parity through the PCRE2 regex path: tiny tokenizers") {
  check_parity("variants.jsonl", false, false, plain_text);
  check_parity("corpus.jsonl", false, false, plain_text);
  check_parity("random.jsonl", false, false, plain_text);
}

TEST_CASE("tokenizer parity through the PCRE2 regex path: Qwen3 and DeepSeek-V3" * r1::test::needs_shared(kQwen3) *
          r1::test::needs_shared(kDeepSeek)) {
  check_parity("corpus.jsonl", false, true, plain_text);
  check_parity("random.jsonl", false, true, plain_text);
}

std::string hex_input(const bj::object& rec) { return hex_to_bytes(rec.at("hex").as_string()); }

TEST_CASE("invalid UTF-8 is encoded as its U+FFFD repair by the real tokenizers" * r1::test::needs_shared(kQwen3) *
          r1::test::needs_shared(kDeepSeek)) {
  check_parity("invalid_utf8.jsonl", true, true, hex_input);
}

TEST_CASE("invalid UTF-8 is encoded as its U+FFFD repair, never a crash") {
  check_parity("invalid_utf8.jsonl", true, false, hex_input);
  const Tokenizer& tok = cached("tiny");
  // Every single byte and some truncated sequences: encode succeeds and decodes to valid UTF-8.
  for (int b = 0; b < 256; ++b) {
    std::string s(1, static_cast<char>(b));
    auto ids = tok.encode(s + "x\xE2\x82" + s);
    CHECK(!ids.empty());
    std::string back = tok.decode(ids);
    CHECK(back.find('x') != std::string::npos);
  }
}

TEST_CASE("decode joins bytes across tokens and replaces incomplete UTF-8") {
  const Tokenizer& tok = cached("tiny");
  std::string text = "é😀";
  auto ids = tok.encode(text);
  CHECK(tok.decode(ids) == text);
  // A token sequence cut inside a character decodes with U+FFFD, not garbage bytes.
  std::vector<TokenId> cut(ids.begin(), ids.end() - 1);
  std::string back = tok.decode(cut);
  CHECK(back.rfind("\xEF\xBF\xBD") != std::string::npos);
  CHECK_THROWS_AS(tok.decode(std::vector<TokenId>{static_cast<TokenId>(tok.vocab_size())}), r1::Error);
  CHECK_THROWS_AS(tok.decode(std::vector<TokenId>{-1}), r1::Error);
}

TEST_CASE("special tokens: modes, skip_special, ids from tokenizer_config.json") {
  const Tokenizer& tiny = cached("tiny");
  auto eot = tiny.token_to_id("<|endoftext|>");
  REQUIRE(eot);
  CHECK(tiny.eos_id() == eot);
  CHECK(tiny.pad_id() == eot);
  CHECK(!tiny.bos_id());
  CHECK(tiny.is_special(*eot));
  CHECK(tiny.id_to_token(*eot) == "<|endoftext|>");
  auto parsed = tiny.encode("a<|im_end|>b", SpecialTokens::kParse);
  auto plain = tiny.encode("a<|im_end|>b");
  CHECK(std::count(parsed.begin(), parsed.end(), *tiny.token_to_id("<|im_end|>")) == 1);
  CHECK(std::count(plain.begin(), plain.end(), *tiny.token_to_id("<|im_end|>")) == 0);
  CHECK(tiny.decode(parsed, true) == "ab");
  CHECK(tiny.decode(parsed, false) == "a<|im_end|>b");
}

TEST_CASE("special tokens of the real Qwen3 tokenizer" * r1::test::needs_shared(kQwen3)) {
  const Tokenizer& q = cached("qwen3");
  CHECK(q.eos_id() == q.token_to_id("<|im_end|>"));
  CHECK(q.pad_id() == q.token_to_id("<|endoftext|>"));
  CHECK(!q.bos_id());
  CHECK(q.vocab_size() == 151669);  // tokenizers: get_vocab_size(with_added_tokens=True)
  // <think> is an added token that is not special: parsed in both modes, as tokenizers does.
  CHECK(q.encode("<think>").size() == 1);
}

TEST_CASE("special tokens of the real DeepSeek-V3 tokenizer" * r1::test::needs_shared(kDeepSeek)) {
  const Tokenizer& d = cached("deepseek-v3");
  CHECK(d.bos_id() == d.token_to_id("<｜begin▁of▁sentence｜>"));
  CHECK(d.eos_id() == d.token_to_id("<｜end▁of▁sentence｜>"));
  CHECK(d.vocab_size() == 128815);
}

TEST_CASE("malformed or unsupported tokenizer.json: the error names the file and the field") {
  auto err = load_error(broken_copy("novocab", [](bj::object& o) { o["model"].as_object().erase("vocab"); }));
  CHECK_MESSAGE(err.find("model.vocab") != std::string::npos, err);
  CHECK_MESSAGE(err.find("tokenizer.json") != std::string::npos, err);

  err = load_error(broken_copy("badmerge", [](bj::object& o) {
    o["model"].as_object()["merges"].as_array().emplace_back(bj::array{"no-such-token", "x"});
  }));
  CHECK_MESSAGE(err.find("model.merges[") != std::string::npos, err);
  CHECK_MESSAGE(err.find("no-such-token") != std::string::npos, err);

  err = load_error(broken_copy("badnorm", [](bj::object& o) { o["normalizer"] = bj::object{{"type", "Lowercase"}}; }));
  CHECK_MESSAGE(err.find("normalizer.type") != std::string::npos, err);
  CHECK_MESSAGE(err.find("Lowercase") != std::string::npos, err);

  err = load_error(broken_copy("badpre", [](bj::object& o) {
    o["pre_tokenizer"].as_object()["pretokenizers"].as_array()[0] = bj::object{{"type", "Whitespace"}};
  }));
  CHECK_MESSAGE(err.find("pre_tokenizer.pretokenizers[0].type") != std::string::npos, err);
  CHECK_MESSAGE(err.find("Whitespace") != std::string::npos, err);

  err = load_error(broken_copy("badmodel", [](bj::object& o) { o["model"].as_object()["type"] = "WordPiece"; }));
  CHECK_MESSAGE(err.find("model.type") != std::string::npos, err);
  CHECK_MESSAGE(err.find("WordPiece") != std::string::npos, err);

  err = load_error(broken_copy("badregex", [](bj::object& o) {
    o["pre_tokenizer"].as_object()["pretokenizers"].as_array()[0].as_object()["pattern"] =
        bj::object{{"Regex", "(unclosed"}};
  }));
  CHECK_MESSAGE(err.find("pre_tokenizer.pretokenizers[0].pattern.Regex") != std::string::npos, err);

  err = load_error(
      broken_copy("badadded", [](bj::object& o) { o["added_tokens"].as_array()[1].as_object()["id"] = "one"; }));
  CHECK_MESSAGE(err.find("added_tokens[1].id") != std::string::npos, err);

  fs::path d = temp_dir("badjson");
  std::ofstream(d / "tokenizer.json") << "{\"model\": {\n  \"type\": \"BPE\",,\n}";
  err = load_error(d);
  CHECK_MESSAGE(err.find("tokenizer.json:2:") != std::string::npos, err);

  fs::path c = broken_copy("badcfg", [](bj::object&) {});
  std::ofstream(c / "tokenizer_config.json") << R"({"eos_token": {"content": "<|nope|>"}})";
  err = load_error(c);
  CHECK_MESSAGE(err.find("tokenizer_config.json") != std::string::npos, err);
  CHECK_MESSAGE(err.find("eos_token") != std::string::npos, err);

  CHECK(load_error(temp_dir("empty")).find("does not exist") != std::string::npos);
}

TEST_CASE("the ByteLevel regex, Digits and split behaviours of other tokenizer.json files") {
  // GPT-2 style: ByteLevel with use_regex and add_prefix_space, Digits; checked by hand here since
  // the real files above do not use them.
  fs::path d = broken_copy("gpt2", [](bj::object& o) {
    o["normalizer"] = nullptr;
    o["pre_tokenizer"] =
        bj::object{{"type", "Sequence"},
                   {"pretokenizers",
                    bj::array{bj::object{{"type", "Digits"}, {"individual_digits", true}},
                              bj::object{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}}}};
  });
  Tokenizer t = Tokenizer::load(d);
  const Tokenizer& tiny = cached("tiny");
  auto concat = [&](std::initializer_list<std::string_view> parts) {
    std::vector<TokenId> out;
    for (auto p : parts) {
      auto ids = tiny.encode(p);
      out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
  };
  // "hello 123" -> Digits: "hello ", "1", "2", "3" -> prefix space on each -> GPT-2 regex.
  CHECK(t.encode("hello 123") == concat({" hello", " ", " 1", " 2", " 3"}));
  CHECK(t.decode(t.encode("x")) == " x");
}

TEST_CASE("JSONL front end: encode, decode, errors name the line") {
  const Tokenizer& tok = cached("tiny");
  std::istringstream in("{\"text\": \"Natalia sold 48 clips.\"}\n\n{\"text\": \"a<|im_end|>\"}\n");
  std::ostringstream out;
  CHECK(r1::tokenize_jsonl(in, out, tok) == 2);
  std::istringstream back_in(out.str());
  std::ostringstream back_out;
  r1::TokenizeJsonlOptions dec;
  dec.decode = true;
  CHECK(r1::tokenize_jsonl(back_in, back_out, tok, dec) == 2);
  CHECK(back_out.str() == "{\"text\":\"Natalia sold 48 clips.\"}\n{\"text\":\"a<|im_end|>\"}\n");

  std::istringstream first(out.str());
  std::string line1;
  std::getline(first, line1);
  auto ids = ids_of(r1::json::parse(line1, "out").at("ids"));
  CHECK(ids == tok.encode("Natalia sold 48 clips."));

  r1::TokenizeJsonlOptions parse;
  parse.special = SpecialTokens::kParse;
  std::istringstream in2("{\"text\": \"<|im_end|>\"}\n");
  std::ostringstream out2;
  r1::tokenize_jsonl(in2, out2, tok, parse);
  CHECK(out2.str() == fmt::format("{{\"ids\":[{}]}}\n", *tok.token_to_id("<|im_end|>")));

  auto error_of = [&](const std::string& input, const r1::TokenizeJsonlOptions& o) -> std::string {
    std::istringstream i(input);
    std::ostringstream sink;
    try {
      r1::tokenize_jsonl(i, sink, tok, o);
    } catch (const r1::Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  r1::TokenizeJsonlOptions enc;
  CHECK(error_of("{\"text\": \"ok\"}\n{\"txt\": 1}\n", enc).find("stdin:2") != std::string::npos);
  CHECK(error_of("{\"text\": \"ok\"}\n\nnot json\n", enc).find("stdin:3") != std::string::npos);
  CHECK(error_of("{\"text\": 5}\n", enc).find("stdin:1: key 'text'") != std::string::npos);
  CHECK(error_of("{\"ids\": [1, -2]}\n", dec).find("stdin:1") != std::string::npos);
  CHECK(error_of("{\"ids\": [99999999]}\n", dec).find("stdin:1") != std::string::npos);
}

namespace {

// Four threads encode the random-string corpus with one tokenizer and must get what one thread got.
void check_concurrent(const Tokenizer& tok) {
  auto lines = read_fixture("random.jsonl");
  std::vector<std::vector<TokenId>> expect;
  for (const auto& rec : lines) expect.push_back(tok.encode(std::string(rec.at("text").as_string())));
  std::vector<size_t> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < lines.size(); i += 2)
        if (tok.encode(std::string(lines[i].at("text").as_string())) != expect[i]) ++mismatches[t];
    });
  for (auto& th : threads) th.join();
  for (size_t m : mismatches) CHECK(m == 0);
}

}  // namespace

TEST_CASE("concurrent encodes agree with a single-threaded run: tiny tokenizer") { check_concurrent(cached("tiny")); }

TEST_CASE("concurrent encodes agree with a single-threaded run: Qwen3" * r1::test::needs_shared(kQwen3)) {
  check_concurrent(cached("qwen3"));
}
