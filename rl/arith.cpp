#include "rl/arith.hpp"

#include <array>

#include <fmt/format.h>

namespace r1::arith {

namespace {

const std::array<const char*, 3> kColumn = {"ones", "tens", "hundreds"};

// Tag names for worksheets: never "think" or "answer".
const std::vector<std::string> kWorkTags = {"work",  "steps",   "calc",  "scratch", "notes",      "draft", "method",
                                            "rough", "process", "trace", "plan",    "derivation", "path",  "how"};
const std::vector<std::string> kResultTags = {"result", "final",    "value",  "output", "total", "sum",
                                              "reply",  "solution", "number", "box",    "out",   "res"};

std::string pick(std::mt19937_64& rng, const std::vector<std::string>& v) {
  return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
}

// A random lowercase word of 3..7 letters: tag names the model cannot have memorised.
std::string random_word(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> len(3, 7), letter(0, 25);
  std::string w;
  for (int i = len(rng); i > 0; --i) w += static_cast<char>('a' + letter(rng));
  return w;
}

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

}  // namespace

std::string Problem::question() const { return fmt::format("Compute {} + {}.", a, b); }

bool held_out(const Problem& p) {
  return mix(static_cast<uint64_t>(p.a) * 1000 + static_cast<uint64_t>(p.b)) % 10 == 0;
}

Problem sample_problem(std::mt19937_64& rng, bool from_held_out) {
  std::uniform_int_distribution<int64_t> num(10, 999);
  while (true) {
    Problem p{num(rng), num(rng)};
    if (held_out(p) == from_held_out) return p;
  }
}

std::string working(const Problem& p, bool careful) {
  std::string out;
  int64_t a = p.a, b = p.b, carry = 0, result = 0, place = 1;
  for (int col = 0; col < 3 && (a > 0 || b > 0 || carry > 0); ++col) {
    const int64_t da = a % 10, db = b % 10;
    const int64_t s = careful ? da + db + carry : da + db;
    if (!out.empty()) out += " ";
    out += careful && carry ? fmt::format("{} {} + {} + {} = {}", kColumn[col], da, db, carry, s)
                            : fmt::format("{} {} + {} = {}", kColumn[col], da, db, s);
    if (s >= 10 && col < 2) {
      out += fmt::format(", write {} carry 1.", s % 10);
      result += (s % 10) * place;
      carry = 1;
    } else {
      out += fmt::format(", write {}.", s);
      result += s * place;
      carry = 0;
    }
    a /= 10, b /= 10, place *= 10;
  }
  return out + fmt::format(" So {} + {} = {}.", p.a, p.b, result);
}

std::string document(std::mt19937_64& rng, double careless_rate) {
  std::bernoulli_distribution careless(careless_rate), coin(0.5);
  std::string doc;
  const int problems = std::uniform_int_distribution<int>(1, 3)(rng);
  if (coin(rng)) {  // textbook section: worked examples
    static const std::vector<std::string> heads = {"Column addition.", "Adding numbers column by column.",
                                                   "Worked examples.", "Practice: addition with carrying.",
                                                   "Exercises on addition."};
    static const std::vector<std::pair<std::string, std::string>> labels = {
        {"Problem", "Solution"}, {"Exercise", "Working"}, {"Example", "Method"}, {"Question", "Steps"}};
    doc = pick(rng, heads) + "\n";
    for (int i = 0; i < problems; ++i) {
      auto [q, s] = labels[std::uniform_int_distribution<size_t>(0, labels.size() - 1)(rng)];
      Problem p = sample_problem(rng, false);
      doc += fmt::format("{}: {}\n{}: {}\n", q, p.question(), s, working(p, !careless(rng)));
    }
    return doc;
  }
  // Worksheet: the instruction names two tags; every solution uses them.
  const std::string w = coin(rng) ? pick(rng, kWorkTags) : random_word(rng);
  std::string r = coin(rng) ? pick(rng, kResultTags) : random_word(rng);
  if (r == w) r += "s";
  static const std::vector<std::string> intros = {
      "Worksheet. Write your working inside <{0}> </{0}> and the final number inside <{1}> </{1}>, like this: "
      "<{0}> working here </{0}> <{1}> number here </{1}>.",
      "Instructions: the steps are enclosed within <{0}> </{0}> tags and the final value within <{1}> </{1}> tags, "
      "that is, <{0}> steps here </{0}> <{1}> value here </{1}>.",
      "Format for every exercise: put the method between <{0}> and </{0}>, then the result between <{1}> and "
      "</{1}>. Example layout: <{0}> method here </{0}> <{1}> result here </{1}>.",
      "Each reply shows its calculation in <{0}> </{0}> followed by the number in <{1}> </{1}>, i.e., "
      "<{0}> calculation here </{0}> <{1}> number here </{1}>."};
  static const std::vector<std::pair<std::string, std::string>> speakers = {
      {"Q", "A"}, {"Student", "Tutor"}, {"Task", "Reply"}, {"Pupil", "Teacher"}, {"Question", "Response"}};
  doc = fmt::format(fmt::runtime(pick(rng, intros)), w, r) + "\n";
  auto [qs, as] = speakers[std::uniform_int_distribution<size_t>(0, speakers.size() - 1)(rng)];
  for (int i = 0; i < problems; ++i) {
    Problem p = sample_problem(rng, false);
    const bool careful = !careless(rng);
    std::string work = working(p, careful);
    const int64_t shown = std::stoll(work.substr(work.rfind("= ") + 2));
    doc += fmt::format("{}: {} {}: <{}> {} </{}> <{}> {} </{}>\n", qs, p.question(), as, w, work, w, r, shown, r);
  }
  return doc;
}

}  // namespace r1::arith
