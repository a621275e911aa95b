// Encode throughput of r1::Tokenizer on one thread. Reads JSONL {"text": ...} lines, encodes them
// one by one: a first (cold-cache) pass, then `--repeats` warm passes, and prints one JSON line with
// the seconds of the cold pass and of each warm one, the median warm MB/s and the token count (for
// a parity check by the driver, bench/bench_tokenizer.py).
#include <fmt/format.h>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "policy/tokenizer.hpp"

int main(int argc, char** argv) {
  std::string tokenizer, corpus;
  int repeats = 5;
  bool parse = false, pcre2 = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw r1::Error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--tokenizer")
      tokenizer = value();
    else if (a == "--corpus")
      corpus = value();
    else if (a == "--repeats")
      repeats = std::stoi(value());
    else if (a == "--parse-special")
      parse = true;
    else if (a == "--pcre2")
      pcre2 = true;
    else {
      std::cerr
          << "usage: bench_tokenizer --tokenizer PATH --corpus FILE.jsonl [--repeats N] [--parse-special] [--pcre2]\n";
      return 2;
    }
  }
  try {
    r1::TokenizerOptions opt;
    opt.builtin_regex = !pcre2;
    auto t0 = std::chrono::steady_clock::now();
    r1::Tokenizer tok = r1::Tokenizer::load(tokenizer, opt);
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<std::string> texts;
    size_t bytes = 0;
    std::ifstream in(corpus);
    if (!in) throw r1::Error("cannot read " + corpus);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      texts.emplace_back(boost::json::parse(line).at("text").as_string());
      bytes += texts.back().size();
    }
    auto mode = parse ? r1::SpecialTokens::kParse : r1::SpecialTokens::kAsText;
    size_t tokens = 0;
    const auto cold = std::chrono::steady_clock::now();
    for (const auto& t : texts) tokens += tok.encode(t, mode).size();  // the first pass: it fills the cache
    const double cold_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - cold).count();
    std::vector<double> secs;
    for (int r = 0; r < repeats; ++r) {
      auto s = std::chrono::steady_clock::now();
      size_t n = 0;
      for (const auto& t : texts) n += tok.encode(t, mode).size();
      secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count());
      if (n != tokens) throw r1::Error("token count changed between repeats");
    }
    std::vector<double> sorted = secs;
    std::sort(sorted.begin(), sorted.end());
    double median = sorted[sorted.size() / 2];
    fmt::print(
        "{{\"bytes\":{},\"texts\":{},\"tokens\":{},\"load_s\":{:.3f},\"cold_s\":{:.4f},\"secs\":[{:.4f}],"
        "\"mb_s\":{:.2f}}}\n",
        bytes, texts.size(), tokens, load_s, cold_s, fmt::join(secs, ","), bytes / median / 1e6);
  } catch (const std::exception& e) {
    std::cerr << "bench_tokenizer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
