// Custom checkers from outside the binary: shared libraries through the C ABI in plugin_abi.h
// (in-process, or isolated in a helper process), and external commands speaking JSONL.
#pragma once
#include <string>

#include "rewards/checker.hpp"
#include "rewards/options.hpp"

namespace r1::rewards {

// Loads `decl.library` and creates an instance with `options_json` (a JSON object text). Throws
// r1::ConfigError when the library cannot be loaded, lacks the entry point, speaks another ABI
// version or refuses the options. Libraries are never unloaded (a watchdog may have abandoned a
// thread that still runs plugin code).
CheckerPtr make_plugin_checker(const PluginDecl& decl, const std::string& options_json);

// A long-lived process per slot; one request line, one response line (docs/REWARDS.md). A process
// that dies is restarted on the next sample; one that exceeds timeout_ms is killed (its whole
// process group) and restarted; either way that sample gets an error or timeout, nothing more.
CheckerPtr make_command_checker(const CommandDecl& decl, const std::string& options_json);

// The helper that hosts isolated plugins: $R1_PLUGIN_HOST, else r1-plugin-host next to the running
// program, else the build tree's copy.
std::string plugin_host_path();

// The JSONL protocol, shared by the command checker and r1-plugin-host.
std::string request_line(uint64_t id, const Sample& s, const std::string& options_json);
}  // namespace r1::rewards
