// The demo's synthetic textbook and r1 pretrain: worked solutions are right when careful and
// forget carries when careless, held-out problems never appear in the corpus, the corpus never
// uses the RL template or <think>/<answer>, and pretraining is deterministic.
#include <doctest/doctest.h>

#include <filesystem>
#include <regex>
#include <set>

#include "common/fs.hpp"
#include "rl/arith.hpp"
#include "rl/pretrain.hpp"
#include "test_paths.hpp"

namespace fs = std::filesystem;
using namespace r1;

TEST_CASE("column addition: careful is right, careless forgets carries") {
  arith::Problem p{47, 385};
  CHECK(arith::working(p, true) ==
        "ones 7 + 5 = 12, write 2 carry 1. tens 4 + 8 + 1 = 13, write 3 carry 1. hundreds 0 + 3 + 1 = 4, write 4. "
        "So 47 + 385 = 432.");
  CHECK(arith::working(p, false) ==
        "ones 7 + 5 = 12, write 2 carry 1. tens 4 + 8 = 12, write 2 carry 1. hundreds 0 + 3 = 3, write 3. "
        "So 47 + 385 = 322.");
  CHECK(arith::working({999, 999}, true).find("= 1998.") != std::string::npos);
  CHECK(arith::working({12, 34}, false) == arith::working({12, 34}, true));  // no carry: both right
  std::mt19937_64 rng(3);
  for (int i = 0; i < 2000; ++i) {
    arith::Problem q = arith::sample_problem(rng, false);
    std::string w = arith::working(q, true);
    CHECK(std::stoll(w.substr(w.rfind("= ") + 2)) == q.answer());
  }
}

TEST_CASE("the corpus: no held-out problem, no RL template, no think/answer tags") {
  std::mt19937_64 rng(7);
  std::regex problem(R"(Compute (\d+) \+ (\d+)\.)");
  int worksheets = 0, problems = 0;
  for (int d = 0; d < 3000; ++d) {
    std::string doc = arith::document(rng, 0.6);
    CHECK(doc.find("<think>") == std::string::npos);
    CHECK(doc.find("<answer>") == std::string::npos);
    CHECK(doc.find("Assistant") == std::string::npos);
    worksheets += doc.find("</") != std::string::npos;
    for (std::sregex_iterator it(doc.begin(), doc.end(), problem), end; it != end; ++it, ++problems)
      CHECK_FALSE(arith::held_out({std::stoll((*it)[1]), std::stoll((*it)[2])}));
  }
  CHECK(worksheets > 1000);
  CHECK(problems > 4000);
}

TEST_CASE("r1 pretrain is deterministic and writes the RL and held-out files") {
  PretrainOptions o;
  fs::path dir = test::binary_dir() / "tests" / "scratch" / "pretrain";
  fs::remove_all(dir);
  o.tokenizer = (test::fixtures() / "tokenizer" / "tiny").string();
  o.hidden_size = 32, o.layers = 1, o.heads = 2, o.kv_heads = 1, o.intermediate_size = 64;
  o.seq_len = 64, o.batch = 2, o.steps = 5, o.warmup_steps = 0, o.lr = 1e-2, o.rl_problems = 50, o.eval_problems = 20,
  o.threads = 1;
  o.out = (dir / "a").string();
  o.data_dir = (dir / "data-a").string();
  PretrainSummary a = pretrain(o, false);
  o.out = (dir / "b").string();
  o.data_dir = (dir / "data-b").string();
  pretrain(o, false);
  CHECK(read_file(dir / "a" / "model.safetensors") == read_file(dir / "b" / "model.safetensors"));
  CHECK(read_file(dir / "data-a" / "rl_train.jsonl") == read_file(dir / "data-b" / "rl_train.jsonl"));
  CHECK(fs::exists(dir / "a" / "tokenizer.json"));
  CHECK(a.last_loss < a.first_loss);
  // RL and eval problems are held out from pretraining and disjoint from each other.
  std::string rl = read_file(dir / "data-a" / "rl_train.jsonl"), ev = read_file(dir / "data-a" / "heldout.jsonl");
  std::regex q(R"(Compute (\d+) \+ (\d+)\.)");
  std::set<std::string> rl_set;
  for (std::sregex_iterator it(rl.begin(), rl.end(), q), end; it != end; ++it) {
    CHECK(arith::held_out({std::stoll((*it)[1]), std::stoll((*it)[2])}));
    rl_set.insert(it->str());
  }
  CHECK(rl_set.size() == 50);
  for (std::sregex_iterator it(ev.begin(), ev.end(), q), end; it != end; ++it) CHECK(rl_set.count(it->str()) == 0);
}
