// Typed TOML configs: defaults, types, ranges, unknown keys with did-you-mean, file:line:column,
// --set overrides, and the printed effective config reading back to the same values.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "common/config.hpp"
#include "rl/run_config.hpp"

namespace fs = std::filesystem;
using r1::RunConfig;
namespace cfg = r1::cfg;

namespace {

struct Inner {
#define R1_TEST_INNER_FIELDS(F)                               \
  F(std::string, checker, "math", "checker name", !x.empty()) \
  F(double, weight, 1.0, "weight", x >= 0)
  R1_CONFIG(Inner, R1_TEST_INNER_FIELDS)
};

struct Section {
#define R1_TEST_SECTION_FIELDS(F)                               \
  F(int64_t, steps, 10, "number of steps", x >= 1 && x <= 1000) \
  F(double, lr, 1e-6, "learning rate", x > 0)                   \
  F(bool, enabled, true, "switch", true)                        \
  F(std::string, mode, "a", "a | b", x == "a" || x == "b")      \
  F(std::vector<int64_t>, ids, (std::vector<int64_t>{1, 2}), "some ids", true)
  R1_CONFIG(Section, R1_TEST_SECTION_FIELDS)
};

struct Root {
#define R1_TEST_ROOT_FIELDS(F)              \
  F(std::string, name, "run", "name", true) \
  F(Section, train, {}, "training", true)   \
  F(std::vector<Inner>, rewards, {}, "reward terms", true)
  R1_CONFIG(Root, R1_TEST_ROOT_FIELDS)
};

std::string error_of(const std::string& toml, const std::vector<std::string>& sets = {}) {
  try {
    auto t = cfg::parse_string(toml, "run.toml");
    for (const auto& s : sets) cfg::apply_override(t, s);
    cfg::from_table<Root>(t);
  } catch (const r1::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("defaults fill every field") {
  Root r = cfg::from_table<Root>(toml::table{});
  CHECK(r.name == "run");
  CHECK(r.train.steps == 10);
  CHECK(r.train.lr == doctest::Approx(1e-6));
  CHECK(r.train.ids == std::vector<int64_t>{1, 2});
  CHECK(r.rewards.empty());
}

TEST_CASE("values, nested sections and arrays of tables are read") {
  auto t = cfg::parse_string(R"(
name = "x"
[train]
steps = 5
lr = 3
mode = "b"
ids = [7]
[[rewards]]
checker = "format"
weight = 0.5
[[rewards]]
checker = "math"
)",
                             "run.toml");
  Root r = cfg::from_table<Root>(t);
  CHECK(r.name == "x");
  CHECK(r.train.steps == 5);
  CHECK(r.train.lr == 3.0);  // integers are accepted for floats
  CHECK(r.train.mode == "b");
  CHECK(r.train.ids == std::vector<int64_t>{7});
  REQUIRE(r.rewards.size() == 2);
  CHECK(r.rewards[0].checker == "format");
  CHECK(r.rewards[0].weight == 0.5);
  CHECK(r.rewards[1].weight == 1.0);
}

TEST_CASE("unknown key: file:line:column and did-you-mean") {
  std::string e = error_of("[train]\nsteps = 3\nlrr = 0.1\n");
  CHECK(e.find("run.toml:3:1") != std::string::npos);
  CHECK(e.find("train.lrr") != std::string::npos);
  CHECK(e.find("did you mean 'train.lr'") != std::string::npos);
  // A key far from every field gets no suggestion.
  std::string e2 = error_of("[train]\nzzzzzzzzzz = 1\n");
  CHECK(e2.find("unknown key") != std::string::npos);
  CHECK(e2.find("did you mean") == std::string::npos);
}

// A field whose default fails its check is required: absent from a table that is present, it is
// an error (otherwise the file loads, and the config it prints does not load back).
TEST_CASE("a required key absent from its table is an error naming it") {
  std::string e;
  try {
    cfg::load<RunConfig>(cfg::parse_string("[[rewards.plugins]]\nname = \"kw\"\n", "run.toml"), {});
  } catch (const r1::ConfigError& err) {
    e = err.what();
  }
  CHECK(e.find("rewards.plugins[0].library") != std::string::npos);
  CHECK(e.find("missing required key") != std::string::npos);
  CHECK(e.find("run.toml:1") != std::string::npos);
  CHECK_NOTHROW(cfg::load<RunConfig>(
      cfg::parse_string("[[rewards.plugins]]\nname = \"kw\"\nlibrary = \"kw.so\"\n", "run.toml"), {}));
}

TEST_CASE("wrong type names the key, the expected type and the location") {
  std::string e = error_of("[train]\nsteps = \"ten\"\n");
  CHECK(e.find("run.toml:2:9") != std::string::npos);
  CHECK(e.find("train.steps") != std::string::npos);
  CHECK(e.find("expected an integer, got a string") != std::string::npos);
  CHECK(error_of("train = 3\n").find("train: expected a table") != std::string::npos);
  CHECK(error_of("[[rewards]]\nweight = \"x\"\n").find("rewards[0].weight: expected a number") != std::string::npos);
}

TEST_CASE("out-of-range values name the check") {
  std::string e = error_of("[train]\nsteps = 0\n");
  CHECK(e.find("train.steps") != std::string::npos);
  CHECK(e.find("out of range") != std::string::npos);
  CHECK(e.find("x >= 1 && x <= 1000") != std::string::npos);
  CHECK(error_of("[train]\nmode = \"c\"\n").find("x == \"a\" || x == \"b\"") != std::string::npos);
}

TEST_CASE("all errors of a file are reported together") {
  std::string e = error_of("[train]\nsteps = 0\nlr = -1\nbogus = 1\n");
  CHECK(e.find("3 config errors") != std::string::npos);
}

TEST_CASE("TOML syntax errors give file:line:column") {
  std::string e = error_of("[train]\nsteps = = 3\n");
  CHECK(e.find("run.toml:2:") != std::string::npos);
  CHECK(e.find("syntax error") != std::string::npos);
}

TEST_CASE("--set overrides any field and is validated like the file") {
  auto t = cfg::parse_string("[train]\nsteps = 3\n", "run.toml");
  cfg::apply_override(t, "train.steps=7");
  cfg::apply_override(t, "train.mode=b");  // bare string
  cfg::apply_override(t, "name=\"quoted\"");
  cfg::apply_override(t, "train.ids=[4, 5]");
  Root r = cfg::from_table<Root>(t);
  CHECK(r.train.steps == 7);
  CHECK(r.train.mode == "b");
  CHECK(r.name == "quoted");
  CHECK(r.train.ids == std::vector<int64_t>{4, 5});

  std::string e = error_of("", {"train.steps=abc"});
  CHECK(e.find("--set train.steps=abc") != std::string::npos);
  CHECK(e.find("expected an integer") != std::string::npos);
  CHECK(error_of("", {"train.stepz=3"}).find("did you mean 'train.steps'") != std::string::npos);
  CHECK(error_of("", {"nonsense"}).find("expected section.key=value") != std::string::npos);
  CHECK(error_of("name = \"a\"\n", {"name.x=1"}).find("'name' is not a table") != std::string::npos);
  // A bare string keeps a leading newline and control characters; bytes that are not UTF-8 are
  // a ConfigError (never TOML++'s own exception).
  auto t2 = cfg::parse_string("", "run.toml");
  cfg::apply_override(t2, "name=\ndef \x01'x'");
  CHECK(cfg::from_table<Root>(t2).name == "\ndef \x01'x'");
  CHECK(error_of("", {"name=\xff\xfe"}).find("--set name=") != std::string::npos);
}

TEST_CASE("to_toml prints every field with its doc and reads back identically") {
  Root r;
  r.train.steps = 42;
  r.rewards.push_back({"format", 0.25});
  std::string text = cfg::to_toml(r);
  CHECK(text.find("# number of steps\nsteps = 42") != std::string::npos);
  CHECK(text.find("[[rewards]]") != std::string::npos);
  Root back = cfg::from_table<Root>(cfg::parse_string(text, "shown.toml"));
  CHECK(back.train.steps == 42);
  CHECK(back.train.lr == r.train.lr);
  REQUIRE(back.rewards.size() == 1);
  CHECK(back.rewards[0].weight == 0.25);
}

// TOML drops the newline that follows the opening ''' of a multi-line string: printed that way,
// the code recipe's stop strings "\ndef " would read back as "def " (fuzz/fuzz_config.cpp).
TEST_CASE("to_toml keeps strings that start with a newline, quotes and control characters") {
  Root r;
  r.name = "\ndef \"a\" 'b' \\ \t\x01 \u00e9\n";
  r.rewards.push_back({"\nclass ", 1.0});
  const Root back = cfg::from_table<Root>(cfg::parse_string(cfg::to_toml(r), "shown.toml"));
  CHECK(back.name == r.name);
  REQUIRE(back.rewards.size() == 1);
  CHECK(back.rewards[0].checker == "\nclass ");
}

TEST_CASE("the run config: defaults, docs and the shipped configs are valid") {
  RunConfig rc = cfg::from_table<RunConfig>(toml::table{});
  CHECK(rc.model.dtype == r1::Dtype::float32);
  std::string md = cfg::to_markdown<RunConfig>();
  CHECK(md.find("### [model]") != std::string::npos);
  CHECK(md.find("`dtype`") != std::string::npos);
  const fs::path configs = fs::path(R1_SOURCE_DIR) / "configs";
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(configs)) {
    if (e.path().extension() != ".toml") continue;
    CAPTURE(e.path().string());
    if (cfg::parse_file(e.path()).contains("service")) continue;  // r1 rewards serve's: test_service reads it
    CHECK_NOTHROW(cfg::load<RunConfig>(e.path()));
    ++n;
  }
  CHECK(n >= 8);  // the demo, the reward configs and the four GPU recipes
}

TEST_CASE("a missing config file is a ConfigError") {
  CHECK_THROWS_AS(cfg::load<RunConfig>("/nonexistent/run.toml"), r1::ConfigError);
}
