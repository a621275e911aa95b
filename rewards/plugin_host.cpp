// r1-plugin-host LIBRARY: hosts a reward plugin in its own process for isolated mode. Reads the
// command JSONL protocol on stdin, answers on stdout; a crash in the plugin ends only this process.
#include <boost/json.hpp>

#include <iostream>
#include <string>

#include "common/error.hpp"
#include "rewards/plugins.hpp"
#include "rewards/scorer.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: r1-plugin-host LIBRARY   (speaks the reward command protocol on stdin/stdout)\n";
    return 2;
  }
  std::ios::sync_with_stdio(false);
  r1::rewards::PluginDecl decl;
  decl.name = argv[1];
  decl.library = argv[1];
  std::map<std::string, r1::rewards::CheckerPtr> instances;  // by options text
  std::string line;
  while (std::getline(std::cin, line)) {
    boost::json::object resp;
    try {
      auto v = boost::json::parse(line);
      auto& o = v.as_object();
      if (auto* id = o.if_contains("id")) resp["id"] = *id;
      std::string opts = "{}";
      if (auto* op = o.if_contains("options")) opts = boost::json::serialize(*op);
      auto& inst = instances[opts];
      if (!inst) inst = r1::rewards::make_plugin_checker(decl, opts);
      auto s = r1::rewards::sample_from_json(v, "request");
      if (auto* r = o.if_contains("reference"); r && r->is_object()) s.reference = r->as_object();
      auto r = inst->check(s, r1::rewards::Deadline());
      if (r.status != r1::rewards::Status::ok) {
        resp["error"] = r.reason;
      } else {
        resp["score"] = r.score;
        boost::json::object parts;
        for (auto& [k, x] : r.parts) parts[k] = x;
        resp["parts"] = std::move(parts);
        resp["reason"] = r.reason;
      }
    } catch (const std::exception& e) {
      resp["error"] = e.what();
    }
    std::cout << boost::json::serialize(resp) << '\n' << std::flush;
  }
  return 0;
}
