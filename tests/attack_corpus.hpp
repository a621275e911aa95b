// The adversarial corpus of the code checker (tests/fixtures/sandbox/attacks.jsonl, written by
// scripts/fixtures/make_attack_corpus.py) with its placeholders filled, and the host canaries it
// aims at: test_sandbox runs it through the checker, test_cli through `r1 rewards score`, and
// test_service through POST /v1/score.
#pragma once
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/fs.hpp"
#include "common/json.hpp"
#include "rewards/checker.hpp"
#include "rewards/sandbox/sandbox.hpp"
#include "test_paths.hpp"

namespace r1::test {

struct Attack {
  std::string id, style;
  rewards::Sample sample;
  double score = 0;                   // what it must score: 0 for a hostile program, 1 for an honest one
  std::vector<std::string> verdicts;  // the verdicts allowed; empty: any failure
};

inline std::vector<Attack> attack_corpus(const std::map<std::string, std::string>& fill) {
  std::vector<Attack> out;
  std::ifstream in(fixtures() / "sandbox" / "attacks.jsonl");
  for (std::string line; std::getline(in, line);) {
    for (const auto& [k, v] : fill)
      for (size_t p; (p = line.find(k)) != std::string::npos;) line.replace(p, k.size(), v);
    auto o = json::parse(line, "attacks.jsonl").as_object();
    Attack a;
    a.id = std::string(o.at("id").as_string());
    a.style = std::string(o.at("style").as_string());
    a.sample.completion = std::string(o.at("completion").as_string());
    a.sample.reference = o.at("reference").as_object();
    a.score = o.at("score").to_number<double>();
    for (const auto& v : o.at("verdicts").as_array()) a.verdicts.emplace_back(v.as_string());
    out.push_back(std::move(a));
  }
  return out;
}

// A host listener on 127.0.0.1 that nothing from a sandbox may reach, and a host file and folder
// that nothing may change.
struct HostCanaries {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("r1-canary-" + std::to_string(::getpid()));
  std::filesystem::path file = dir / "keep.txt";
  int listener = -1;
  std::string port;
  HostCanaries() {
    std::filesystem::create_directories(dir);
    write_file_atomic(file, "canary");
    listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener, 16) == 0);
    socklen_t alen = sizeof addr;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &alen);
    port = std::to_string(ntohs(addr.sin_port));
  }
  std::map<std::string, std::string> fill() const {
    return {{"{CANARY_FILE}", file.string()},
            {"{CANARY_DIR}", dir.string()},
            {"{PORT}", port},
            {"{SOURCE_FILE}", (source_dir() / "CMakeLists.txt").string()}};
  }
  void check_untouched() {
    CHECK(read_file(file) == "canary");
    CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()) == 1);
    CHECK_FALSE(std::filesystem::exists("/tmp/r1-escape-marker"));
    CHECK(std::filesystem::exists("/usr/bin/python3"));
    CHECK(::accept(listener, nullptr, nullptr) < 0);  // nothing ever connected
  }
  ~HostCanaries() {
    ::close(listener);
    std::filesystem::remove_all(dir);
  }
};

// No process of `uids` is left (a killed pid namespace may take a moment to go: poll up to 2 s).
inline void require_no_processes_of(const std::vector<uint32_t>& uids) {
  if (uids.empty()) return;  // not root: runs keep the caller's uid, nothing to tell apart
  std::vector<std::pair<int, uint32_t>> left;
  for (int i = 0; i < 100; ++i) {
    left = sandbox::processes_of(uids);
    if (left.empty()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("processes left behind: " << left.size() << " (first pid " << left[0].first << ", uid " << left[0].second
                                 << ")");
}

}  // namespace r1::test
