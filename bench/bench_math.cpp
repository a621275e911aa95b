// bench_math FILE.jsonl [REPEATS]: math checks per second of r1's math checker on lines of
// {"gold": ..., "completion": ...}; prints one JSON line with checks/s and r1's verdicts, which
// bench/bench_math.py compares with Math-Verify's on the same inputs.
#include <boost/json.hpp>

#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "rewards/builtin.hpp"
#include "rewards/checker.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: bench_math FILE.jsonl [REPEATS]\n";
    return 2;
  }
  int repeats = argc > 2 ? std::stoi(argv[2]) : 5;
  std::ifstream f(argv[1]);
  std::vector<r1::rewards::Sample> samples;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    auto o = boost::json::parse(line).as_object();
    r1::rewards::Sample s;
    s.completion = std::string(o.at("completion").as_string());
    s.reference["answer"] = o.at("gold");
    samples.push_back(std::move(s));
  }
  auto checker = r1::rewards::make_math_checker({});
  std::vector<int> verdicts(samples.size());
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < samples.size(); ++i)
      verdicts[i] = checker->check(samples[i], r1::rewards::Deadline()).score > 0.5;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
  }
  boost::json::object out;
  out["checks"] = samples.size();
  out["seconds"] = best;
  out["checks_per_s"] = static_cast<double>(samples.size()) / best;
  boost::json::array v;
  for (int x : verdicts) v.push_back(x != 0);
  out["verdicts"] = std::move(v);
  std::cout << boost::json::serialize(out) << "\n";
  return 0;
}
