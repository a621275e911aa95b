// The "code" checker: extracts the code, runs it in the sandbox with the embedded harness, and
// decides the verdict on the host from nonce-tagged records (assert tests) or from stdout
// compared with the expected output (stdin/stdout tests).
#include "rewards/sandbox/code_checker.hpp"

#include <sys/random.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <boost/json.hpp>

#include "common/error.hpp"
#include "rewards/sandbox/harness_py.hpp"
#include "rewards/sandbox/runner_py.hpp"

namespace r1::sandbox {

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::passed: return "passed";
    case Verdict::wrong_answer: return "wrong_answer";
    case Verdict::runtime_error: return "runtime_error";
    case Verdict::timeout: return "timeout";
    case Verdict::memory_limit: return "memory_limit";
    case Verdict::sandbox_error: return "sandbox_error";
  }
  return "?";
}

namespace {

std::atomic<uint64_t> g_verdicts[kVerdictCount];

void count(Verdict v) { g_verdicts[static_cast<int>(v)]++; }

std::string random_nonce() {
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = ::getrandom(b + got, sizeof b - got, 0);
    if (n < 0) fail("code checker: getrandom failed");
    got += static_cast<size_t>(n);
  }
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s += hex[c >> 4];
    s += hex[c & 15];
  }
  return s;
}

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string normalise_exact(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    out += s[i];
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::optional<double> as_number(const std::string& t) {
  double v = 0;
  auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  if (r.ec != std::errc() || r.ptr != t.data() + t.size()) return std::nullopt;
  return v;
}

// The tail of a text, for reasons.
std::string tail(const std::string& s, size_t n = 300) {
  std::string t = s.size() > n ? s.substr(s.size() - n) : s;
  for (char& c : t)
    if (c == '\n' || c == '\r') c = ' ';
  return t;
}

// What the harness reported, keeping only what the untrusted code cannot forge.
struct Report {
  bool started = false, done = false;
  int plan = -1;
  std::set<int> passes;
  std::set<std::string> fail_kinds;
  std::string first_fail, abort_kind, abort_msg;
};

Report parse_channel(const std::string& ch, const std::string& nonce) {
  Report r;
  std::istringstream in(ch);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string tag;
    ls >> tag;
    if (tag == "start") {
      r.started = true;
    } else if (tag == "plan" && r.plan < 0 && r.started) {
      ls >> r.plan;  // the first plan precedes any untrusted code
    } else if (tag == "pass") {
      std::string n;
      int i = -1;
      ls >> n >> i;
      if (n == nonce && i >= 0 && i < r.plan) r.passes.insert(i);
    } else if (tag == "done") {
      std::string n;
      ls >> n;
      if (n == nonce) r.done = true;
    } else if (tag == "fail") {
      int i = -1;
      std::string kind, msg;
      ls >> i >> kind;
      std::getline(ls, msg);
      r.fail_kinds.insert(kind);
      if (r.first_fail.empty()) r.first_fail = "test " + std::to_string(i) + ":" + msg;
    } else if (tag == "abort" && r.abort_kind.empty()) {
      ls >> r.abort_kind;
      std::getline(ls, r.abort_msg);
      if (!r.abort_msg.empty() && r.abort_msg[0] == ' ') r.abort_msg.erase(0, 1);
    }
  }
  return r;
}

Limits limits_for(const CodeOptions& o, int64_t wall_cap) {
  Limits l;
  l.wall_ms = o.timeout_ms;
  if (wall_cap > 0) l.wall_ms = std::max<int64_t>(10, std::min(l.wall_ms, wall_cap));
  l.cpu_seconds = o.cpu_seconds;
  l.memory_mb = o.memory_mb;
  return l;
}

}  // namespace

VerdictCounts verdict_counts() {
  VerdictCounts c;
  for (int i = 0; i < kVerdictCount; ++i) c.n[i] = g_verdicts[i].load();
  return c;
}

bool outputs_match(std::string_view got, std::string_view want, OutputCompare mode, double tol) {
  if (mode == OutputCompare::exact) return normalise_exact(got) == normalise_exact(want);
  auto a = split_ws(got), b = split_ws(want);
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    if (mode != OutputCompare::floating) return false;
    auto x = as_number(a[i]), y = as_number(b[i]);
    if (!x || !y || !std::isfinite(*x) || !std::isfinite(*y)) return false;
    double diff = std::fabs(*x - *y);
    if (diff > tol && diff > tol * std::fabs(*y)) return false;
  }
  return true;
}

std::string extract_code(const std::string& completion, CodeExtract extract) {
  if (extract == CodeExtract::raw) return completion;
  // The last complete fenced block tagged python/py/python3 or untagged.
  std::string best;
  bool found = false;
  size_t pos = 0;
  while (true) {
    size_t open = completion.find("```", pos);
    if (open == std::string::npos) break;
    size_t eol = completion.find('\n', open + 3);
    if (eol == std::string::npos) break;
    std::string lang = completion.substr(open + 3, eol - open - 3);
    lang.erase(std::remove_if(lang.begin(), lang.end(), [](unsigned char c) { return std::isspace(c); }), lang.end());
    std::transform(lang.begin(), lang.end(), lang.begin(), [](unsigned char c) { return std::tolower(c); });
    size_t close = completion.find("```", eol + 1);
    if (close == std::string::npos) break;
    if (lang.empty() || lang == "python" || lang == "py" || lang == "python3") {
      best = completion.substr(eol + 1, close - eol - 1);
      found = true;
    }
    pos = close + 3;
  }
  if (found) return best;
  return extract == CodeExtract::fenced ? std::string() : completion;
}

CodeResult run_assert_tests(Sandbox& sb, const std::string& code, const std::string& test,
                            const std::string& entry_point, const CodeOptions& o, int64_t wall_ms_cap) {
  RunSpec spec;
  // The tests travel with the nonce on fd 4, which only the harness reads: no file of the sandbox
  // holds them, and the solution runs in another process (runner.py).
  const std::string nonce = random_nonce();
  spec.files = {{"harness.py", std::string(kHarnessPy)}, {"runner.py", std::string(kRunnerPy)}, {"solution.py", code}};
  spec.args = {"/sandbox/harness.py", "tests", entry_point};
  spec.secret = nonce + "\n" + test;
  spec.limits = limits_for(o, wall_ms_cap);
  RunResult run = sb.run(spec);
  Report rep = parse_channel(run.channel, nonce);

  CodeResult res;
  if (run.ending == Ending::spawn_failed) {
    res.detail = "sandbox: " + run.detail;
    return res;
  }
  if (!rep.started || rep.plan < 0) {
    if (run.ending == Ending::timeout) {
      res.verdict = Verdict::timeout;
      res.detail = "the sandbox did not start within " + std::to_string(spec.limits.wall_ms) + " ms";
    } else if (rep.abort_kind == "badtest") {
      res.detail = "the test code does not parse: " + rep.abort_msg;
    } else {
      res.detail =
          "the sandbox did not start the harness (exit " + std::to_string(run.exit_code) + "): " + tail(run.err);
    }
    return res;
  }
  res.tests = rep.plan;
  res.passed = static_cast<int>(rep.passes.size());
  if (rep.plan == 0) {
    res.detail = "the test code has no assert statements";
    return res;
  }
  if (res.passed == res.tests) {
    res.verdict = Verdict::passed;
    return res;
  }
  // Not all passed: the worst cause wins.
  const bool cpu = run.cpu_limit || rep.fail_kinds.count("cpu") || rep.abort_kind == "cpu";
  if (run.ending == Ending::timeout || cpu) {
    res.verdict = Verdict::timeout;
    res.detail = cpu ? "CPU time limit (" + std::to_string(spec.limits.cpu_seconds) + " s)"
                     : "wall-clock limit (" + std::to_string(spec.limits.wall_ms) + " ms)";
  } else if (rep.fail_kinds.count("memory") || rep.abort_kind == "memory") {
    res.verdict = Verdict::memory_limit;
    res.detail = "MemoryError (limit " + std::to_string(spec.limits.memory_mb) + " MiB)";
  } else if (run.ending == Ending::output_limit) {
    res.verdict = Verdict::runtime_error;
    res.detail = "output limit exceeded";
  } else if (!rep.abort_kind.empty()) {
    res.verdict = Verdict::runtime_error;
    res.detail = rep.abort_msg.empty() ? rep.abort_kind : rep.abort_msg;
  } else if (!rep.done) {
    res.verdict = Verdict::runtime_error;
    res.detail = "the program ended before the tests finished (exit " + std::to_string(run.exit_code) + ")" +
                 (run.err.empty() ? "" : ": " + tail(run.err));
  } else if (rep.fail_kinds.size() == 1 && rep.fail_kinds.count("assert")) {
    res.verdict = Verdict::wrong_answer;
    res.detail = rep.first_fail;
  } else {
    res.verdict = Verdict::runtime_error;
    res.detail = rep.first_fail;
  }
  return res;
}

namespace {

struct IoCaseResult {
  bool ran = false, pass = false;
  Verdict v = Verdict::passed;
  std::string detail;
};

// The verdict of one stdin/stdout case from its run, decided on the host.
IoCaseResult judge_io_case(const RunResult& run, const Report& rep, const IoCase& want, const CodeOptions& o,
                           int64_t wall_ms) {
  IoCaseResult c;
  c.ran = true;
  if (run.ending == Ending::spawn_failed) {
    c.v = Verdict::sandbox_error;
    c.detail = "sandbox: " + run.detail;
  } else if (!rep.started && run.ending != Ending::timeout) {
    c.v = Verdict::sandbox_error;
    c.detail = "the sandbox did not start the harness (exit " + std::to_string(run.exit_code) + "): " + tail(run.err);
  } else if (run.ending == Ending::timeout || run.cpu_limit) {
    c.v = Verdict::timeout;
    c.detail = run.cpu_limit ? "CPU time limit" : "wall-clock limit (" + std::to_string(wall_ms) + " ms)";
  } else if (run.ending == Ending::output_limit) {
    c.v = Verdict::runtime_error;
    c.detail = "output limit exceeded";
  } else if (rep.abort_kind == "memory") {
    c.v = Verdict::memory_limit;
    c.detail = "MemoryError";
  } else if (run.exit_code != 0) {
    c.v = Verdict::runtime_error;
    c.detail = "exit " + std::to_string(run.exit_code) + (run.err.empty() ? "" : ": " + tail(run.err));
  } else if (outputs_match(run.out, want.output, o.compare, o.float_tolerance)) {
    c.pass = true;
  } else {
    c.v = Verdict::wrong_answer;
    c.detail = "output " + tail(run.out, 80) + " expected " + tail(want.output, 80);
  }
  return c;
}

}  // namespace

CodeResult run_io_tests(Sandbox& sb, const std::string& code, const std::vector<IoCase>& all_cases,
                        const CodeOptions& o, int64_t wall_ms_cap) {
  std::vector<IoCase> cases(
      all_cases.begin(),
      all_cases.begin() + static_cast<ptrdiff_t>(std::min<size_t>(all_cases.size(), static_cast<size_t>(o.max_cases))));
  CodeResult res;
  res.tests = static_cast<int>(cases.size());
  if (cases.empty()) {
    res.detail = "no stdin/stdout cases";
    return res;
  }
  std::vector<IoCaseResult> out(cases.size());
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  const auto started = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (size_t i; (i = next++) < cases.size();) {
      if (stop) return;
      int64_t cap = 0;
      if (wall_ms_cap > 0) {
        auto used =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
        cap = std::max<int64_t>(10, wall_ms_cap - used);
      }
      RunSpec spec;
      spec.files = {{"harness.py", std::string(kHarnessPy)}, {"solution.py", code}};
      spec.args = {"/sandbox/harness.py", "script"};
      spec.stdin_data = cases[i].input;
      spec.limits = limits_for(o, cap);
      RunResult run = sb.run(spec);
      IoCaseResult& c = out[i];
      c = judge_io_case(run, parse_channel(run.channel, ""), cases[i], o, spec.limits.wall_ms);
      if (c.v == Verdict::timeout && o.stop_on_timeout) stop = true;
    }
  };
  size_t nthreads = std::min<size_t>(cases.size(), static_cast<size_t>(std::max(1, sb.slots())));
  std::vector<std::thread> threads;
  for (size_t t = 1; t < nthreads; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();

  res.verdict = Verdict::passed;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].pass) {
      res.passed++;
      continue;
    }
    if (res.verdict == Verdict::passed) {
      res.verdict = out[i].ran ? out[i].v : Verdict::timeout;
      res.detail = "case " + std::to_string(i) + ": " + (out[i].ran ? out[i].detail : "not run after a timeout");
    }
  }
  return res;
}

namespace {

std::vector<IoCase> parse_cases(const boost::json::value& v0, const std::string& where) {
  boost::json::value v = v0;
  if (v.is_string()) {
    boost::system::error_code ec;
    v = boost::json::parse(v.as_string(), ec);
    if (ec) throw Error(where + ": not a JSON text: " + ec.message());
  }
  auto text = [&](const boost::json::value& x) -> std::string {
    if (x.is_string()) return std::string(x.as_string());
    if (x.is_array()) {  // a list of lines
      std::string s;
      for (const auto& l : x.as_array())
        s += (l.is_string() ? std::string(l.as_string()) : boost::json::serialize(l)) + "\n";
      return s;
    }
    return boost::json::serialize(x);
  };
  std::vector<IoCase> cases;
  if (v.is_object()) {
    const auto& o = v.as_object();
    auto in = o.if_contains("inputs"), outp = o.if_contains("outputs");
    if (!in || !outp || !in->is_array() || !outp->is_array() || in->as_array().size() != outp->as_array().size())
      throw Error(where + ": expected {\"inputs\": [...], \"outputs\": [...]} of equal length");
    for (size_t i = 0; i < in->as_array().size(); ++i)
      cases.push_back({text(in->as_array()[i]), text(outp->as_array()[i])});
  } else if (v.is_array()) {
    for (const auto& c : v.as_array()) {
      if (!c.is_object() || !c.as_object().if_contains("input") || !c.as_object().if_contains("output"))
        throw Error(where + ": expected [{\"input\": ..., \"output\": ...}, ...]");
      cases.push_back({text(c.as_object().at("input")), text(c.as_object().at("output"))});
    }
  } else {
    throw Error(where + ": expected stdin/stdout cases, got " + std::string(v.is_null() ? "null" : "a scalar"));
  }
  return cases;
}

class CodeChecker final : public rewards::Checker {
 public:
  CodeChecker(std::shared_ptr<Sandbox> sb, CodeOptions o) : sb_(std::move(sb)), o_(std::move(o)) {}

  rewards::CheckResult check(const rewards::Sample& s, const rewards::Deadline& deadline) const override {
    int64_t cap = 0;
    auto left = deadline.remaining();
    if (left != std::chrono::milliseconds::max()) cap = std::max<int64_t>(10, left.count() - 50);

    std::string code = extract_code(s.completion, o_.extract);
    CodeResult r;
    if (code.find_first_not_of(" \t\r\n") == std::string::npos) {
      r.verdict = Verdict::wrong_answer;
      r.detail =
          o_.extract == CodeExtract::fenced ? "no ```python block in the completion" : "no code in the completion";
    } else if (auto t = s.reference.if_contains(o_.test_field); t && t->is_string()) {
      std::string entry;
      if (auto e = s.reference.if_contains(o_.entry_point_field); e && e->is_string())
        entry = std::string(e->as_string());
      std::string prompt = s.prompt;
      if (auto p = s.reference.if_contains(o_.prompt_field); p && p->is_string()) prompt = std::string(p->as_string());
      bool prepend = o_.prepend_prompt == PrependPrompt::always;
      if (o_.prepend_prompt == PrependPrompt::automatic && !entry.empty()) {
        std::regex def("(^|\\n)\\s*(async\\s+)?def\\s+" + std::regex_replace(entry, std::regex("[^A-Za-z0-9_]"), "") +
                       "\\s*\\(");
        prepend = !std::regex_search(code, def);
      }
      if (prepend) code = prompt + code;
      r = run_assert_tests(*sb_, code, std::string(t->as_string()), entry, o_, cap);
    } else {
      const boost::json::value* io = nullptr;
      std::string field;
      for (const auto& f : o_.io_fields)
        if ((io = s.reference.if_contains(f)) && !io->is_null()) {
          field = f;
          break;
        }
      if (!io || io->is_null())
        throw Error("code checker: the sample has neither '" + o_.test_field +
                    "' test code nor stdin/stdout cases (fields: " +
                    [&] {
                      std::string k;
                      for (const auto& f : o_.io_fields) k += (k.empty() ? "" : ", ") + f;
                      return k;
                    }() +
                    ")");
      r = run_io_tests(*sb_, code, parse_cases(*io, "reference." + field), o_, cap);
    }
    count(r.verdict);

    rewards::CheckResult out;
    bool all = r.verdict == Verdict::passed && r.tests > 0;
    out.score = o_.score == CodeScore::all ? (all ? 1.0 : 0.0) : r.pass_rate();
    out.parts = {{"pass_rate", r.pass_rate()}, {"all_passed", all ? 1.0 : 0.0}};
    out.reason = std::string(verdict_name(r.verdict)) + ": " + std::to_string(r.passed) + "/" +
                 std::to_string(r.tests) + " tests passed" + (r.detail.empty() ? "" : "; " + r.detail);
    if (r.verdict == Verdict::sandbox_error) out.status = rewards::Status::error;
    return out;
  }

 private:
  std::shared_ptr<Sandbox> sb_;
  CodeOptions o_;
};

}  // namespace

rewards::CheckerPtr make_code_checker(std::shared_ptr<Sandbox> sandbox, CodeOptions o) {
  return std::make_shared<CodeChecker>(std::move(sandbox), std::move(o));
}

}  // namespace r1::sandbox
