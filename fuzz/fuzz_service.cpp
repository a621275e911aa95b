// The reward service's request handling on arbitrary bytes: Beast's HTTP/1.1 parser under the
// server's header and body limits, routing, validation of POST /v1/score and scoring with the math
// and format checkers, all through service::answer_raw (what a connection does with its first
// request). Every answer is a status the API documents, and every JSON answer parses.
#include <boost/json/parse.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "fuzz/fuzz.hpp"
#include "rewards/scorer.hpp"
#include "rewards/service/handler.hpp"

namespace {
using namespace r1;

std::unique_ptr<service::Handler> g_handler;

service::ServiceConfig fuzz_config() {
  service::ServiceConfig c;
  c.service.max_body_kb = 256;
  c.service.max_batch = 64;
  c.service.request_timeout_ms = 5000;
  c.rewards.threads = 1;
  c.rewards.deadline_ms = 1000;
  rewards::RewardEntry math, format;
  math.checker = "math";
  format.checker = "format";
  format.weight = 0.1;
  c.rewards.checkers = {math, format};
  return c;
}

bool documented(int status) {
  switch (status) {
    case 200:
    case 400:
    case 404:
    case 405:
    case 413:
    case 431: return true;
    default: return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto cfg = fuzz_config();
  g_handler = std::make_unique<service::Handler>(cfg, rewards::Registry::with_builtins(), nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  const service::Reply r = service::answer_raw(*g_handler, raw);
  if (!documented(r.status)) {
    std::fprintf(stderr, "status %d: %s\n", r.status, r.body.c_str());
    r1::fuzz::finding("an answer with a status the API does not document for a single request");
  }
  if (r.content_type == "application/json") {
    boost::system::error_code ec;
    (void)boost::json::parse(r.body, ec);
    if (ec) r1::fuzz::finding("a JSON answer that does not parse");
  }
  return 0;
}
