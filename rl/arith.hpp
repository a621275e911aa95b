// The embedded R1-Zero demo's data: a synthetic arithmetic "textbook" for pretraining a tiny base
// model, and the held-out problems GRPO trains and evaluates on.
//
// The textbook works column additions digit by digit. Most worked solutions are careless: they
// forget to add the carry, so their result is wrong whenever a column carries. Half of the
// documents are worksheets that ask for the work and the result inside tags named in the
// instruction (random tag names, never think/answer), which teaches the model to follow a format
// it is told about, not the R1 template itself. The corpus never uses the RL prompt template.
// Problems whose key falls in the held-out split never appear in the corpus.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace r1::arith {

struct Problem {
  int64_t a = 0, b = 0;
  int64_t answer() const { return a + b; }
  std::string question() const;  // "Compute 47 + 385."
};

bool held_out(const Problem& p);  // a fixed 10% split of all (a, b) pairs

// A random problem with a, b in [10, 999], from the held-out split or from the rest.
Problem sample_problem(std::mt19937_64& rng, bool from_held_out);

// The column-addition working: careful (adds carries) or careless (forgets them).
std::string working(const Problem& p, bool careful);

// One pretraining document (plain worked example or worksheet with tags).
std::string document(std::mt19937_64& rng, double careless_rate);

}  // namespace r1::arith
