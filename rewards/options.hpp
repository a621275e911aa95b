// Typed reward configuration. A run config embeds RewardsConfig as its [rewards] section:
//
//   [rewards]
//   threads = 2
//   deadline_ms = 2000
//   [[rewards.checkers]]
//   checker = "math"
//   weight = 1.0
//   math.answer_field = "answer"
//   [[rewards.checkers]]
//   checker = "format"
//   weight = 0.1
//   format.mode = "lenient"
//
// Each checker declares its own options struct (one line per field; the code checker's and the
// sandbox's are in rewards/sandbox/options.hpp); an entry's options live in the sub-table named
// after the checker kind, so a typo anywhere gives file:line:col with a
// did-you-mean. Plugins ([[rewards.plugins]]) and commands ([[rewards.commands]]) are declared by
// name and then used in [[rewards.checkers]] exactly like a built-in; their own options travel as
// a JSON object text in `options`.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config_fields.hpp"
#include "rewards/sandbox/options.hpp"

namespace r1::rewards {

enum class FormatMode { strict, lenient };
constexpr std::array<const char*, 2> enum_names(FormatMode) { return {"strict", "lenient"}; }
enum class LengthUnit { tokens, words, chars };
constexpr std::array<const char*, 3> enum_names(LengthUnit) { return {"tokens", "words", "chars"}; }

// What a failing reward lint (rewards/lint.hpp) does before training: stop the run, warn, or skip the lint.
enum class LintMode { error, warn, off };
constexpr std::array<const char*, 3> enum_names(LintMode) { return {"error", "warn", "off"}; }

struct FormatOptions {
#define R1_FORMAT_FIELDS(F)                                                                          \
  F(FormatMode, mode, FormatMode::strict,                                                            \
    "strict: the whole completion is <think>…</think> then <answer>…</answer>, nothing around; " \
    "lenient: both blocks present in order, text and whitespace around them allowed",                \
    true)                                                                                            \
  F(bool, think_prefilled, false,                                                                    \
    "the prompt already ends with <think>, so the completion starts inside the think block", true)
  R1_CONFIG(FormatOptions, R1_FORMAT_FIELDS)
  bool operator==(const FormatOptions&) const = default;
};

struct MathOptions {
#define R1_MATH_FIELDS(F)                                                                                          \
  F(std::string, answer_field, "answer",                                                                           \
    "reference field holding the gold answer (text after #### or the last \\boxed{} is used when "                 \
    "present)",                                                                                                    \
    !x.empty())                                                                                                    \
  F(int64_t, float_rounding, 6, "decimal places compared when either side is a decimal number", x >= 1 && x <= 15) \
  F(bool, require_anchor, false,                                                                                   \
    "only accept an answer from \\boxed{}, <answer> tags, 'the answer is' or ####; never fall back "               \
    "to the last number in the text",                                                                              \
    true)                                                                                                          \
  F(int64_t, max_answer_chars, 1000, "longer extracted answers are rejected unparsed", x >= 16)                    \
  F(int64_t, random_points, 6, "points at which expressions with variables are compared", x >= 1 && x <= 64)
  R1_CONFIG(MathOptions, R1_MATH_FIELDS)
  bool operator==(const MathOptions&) const = default;
};

struct CountdownOptions {
#define R1_COUNTDOWN_FIELDS(F)                                                                             \
  F(std::string, target_field, "target", "reference field with the target number", !x.empty())             \
  F(std::string, numbers_field, "nums", "reference field with the list of given numbers", !x.empty())      \
  F(double, correct_score, 1.0, "score when the equation uses each number once and hits the target", true) \
  F(double, format_score, 0.1, "score when an equation was found but is wrong (TinyZero: 0.1)", true)      \
  F(double, fail_score, 0.0, "score when no equation was found", true)
  R1_CONFIG(CountdownOptions, R1_COUNTDOWN_FIELDS)
  bool operator==(const CountdownOptions&) const = default;
};

struct LengthOptions {
#define R1_LENGTH_FIELDS(F)                                                                                          \
  F(int64_t, max_length, 4096, "L_max: completions longer than this get the full penalty", x >= 1)                   \
  F(int64_t, cache_length, 512, "L_cache: the penalty ramps linearly from 0 to -1 over the last cache_length units", \
    x >= 1)                                                                                                          \
  F(LengthUnit, unit, LengthUnit::tokens,                                                                            \
    "what is counted: tokens (from the sample's completion_tokens, else whitespace words), "                         \
    "words or chars (UTF-8 code points)",                                                                            \
    true)
  R1_CONFIG(LengthOptions, R1_LENGTH_FIELDS)
  bool operator==(const LengthOptions&) const = default;
};

// One weighted checker in the composition. A built-in's options table is present only when the
// entry has it, so options given to the wrong kind are caught even at their default values.
struct RewardEntry {
#define R1_REWARD_ENTRY_FIELDS(F)                                                                                  \
  F(std::string, checker, "",                                                                                      \
    "checker kind: format, math, countdown, length, code, or the name of a declared plugin/command", !x.empty())   \
  F(std::string, name, "", "name of this part in the output (default: the checker kind)", true)                    \
  F(double, weight, 1.0, "the part's weight in the total score", true)                                             \
  F(std::string, options, "", "plugins and commands only: their options as a JSON object text, e.g. '{\"k\": 1}'", \
    true)                                                                                                          \
  F(std::optional<FormatOptions>, format, {}, "options of checker = \"format\"", true)                             \
  F(std::optional<MathOptions>, math, {}, "options of checker = \"math\"", true)                                   \
  F(std::optional<CountdownOptions>, countdown, {}, "options of checker = \"countdown\"", true)                    \
  F(std::optional<LengthOptions>, length, {}, "options of checker = \"length\"", true)                             \
  F(std::optional<sandbox::CodeOptions>, code, {}, "options of checker = \"code\"", true)
  R1_CONFIG(RewardEntry, R1_REWARD_ENTRY_FIELDS)
  std::string part_name() const { return name.empty() ? checker : name; }
};

// A custom checker in a shared library (see rewards/plugin_abi.h).
struct PluginDecl {
#define R1_PLUGIN_FIELDS(F)                                                                               \
  F(std::string, name, "", "the checker name used in [[rewards.checkers]]", !x.empty())                   \
  F(std::string, library, "", "path of the .so (relative paths: from the working directory)", !x.empty()) \
  F(bool, isolated, false,                                                                                \
    "run the plugin in a helper process (r1-plugin-host): a crash is an error for that sample "           \
    "instead of killing the program, at the cost of one JSON round trip per call",                        \
    true)                                                                                                 \
  F(int64_t, timeout_ms, 5000, "isolated mode: per-call timeout before the helper is restarted", x >= 1)
  R1_CONFIG(PluginDecl, R1_PLUGIN_FIELDS)
};

// A custom checker as a long-lived external process speaking JSONL on stdin/stdout.
struct CommandDecl {
#define R1_COMMAND_FIELDS(F)                                                                                \
  F(std::string, name, "", "the checker name used in [[rewards.checkers]]", !x.empty())                     \
  F(std::vector<std::string>, command, {}, "argv of the process, e.g. [\"python3\", \"r.py\"]", !x.empty()) \
  F(int64_t, timeout_ms, 5000, "per-sample timeout; on expiry the process is killed and restarted", x >= 1) \
  F(int64_t, processes, 1, "processes kept running; samples are spread across them", x >= 1 && x <= 256)
  R1_CONFIG(CommandDecl, R1_COMMAND_FIELDS)
};

// How the trainer talks to a remote reward service ([rewards.client]; see rewards/service/).
struct ClientOptions {
#define R1_CLIENT_FIELDS(F)                                                                 \
  F(int64_t, connect_timeout_ms, 3000, "TCP connect timeout", x >= 1)                       \
  F(int64_t, timeout_ms, 120000, "one request's timeout (send, scoring, receive)", x >= 1)  \
  F(int64_t, retries, 5, "retries after a connection error, a timeout or a 5xx", x >= 0)    \
  F(int64_t, backoff_ms, 100, "first retry delay; doubles each retry, with jitter", x >= 0) \
  F(int64_t, max_backoff_ms, 5000, "longest retry delay", x >= 0)                           \
  F(int64_t, connections, 8, "keep-alive connections kept for concurrent calls", x >= 1)    \
  F(int64_t, max_batch, 1024, "samples per request; larger batches are split", x >= 1)
  R1_CONFIG(ClientOptions, R1_CLIENT_FIELDS)
};

struct RewardsConfig {
#define R1_REWARDS_FIELDS(F)                                                                                          \
  F(std::string, endpoint, "", "http://host:port of a reward service (r1 rewards serve); empty = score in-process",   \
    x.empty() || x.rfind("http://", 0) == 0)                                                                          \
  F(ClientOptions, client, {}, "client of the remote reward service (used when endpoint is set)", true)               \
  F(int64_t, threads, 0, "scorer worker threads (0 = hardware concurrency)", x >= 0 && x <= 1024)                     \
  F(int64_t, deadline_ms, 2000, "per-sample, per-checker deadline; a check past it scores 0 with reason \"timeout\"", \
    x >= 1)                                                                                                           \
  F(std::vector<RewardEntry>, checkers, {}, "weighted checkers; the total is the weighted sum", true)                 \
  F(std::vector<PluginDecl>, plugins, {}, "shared-library checkers, usable by name", true)                            \
  F(std::vector<CommandDecl>, commands, {}, "external-command checkers, usable by name", true)                        \
  F(LintMode, lint, LintMode::error,                                                                                  \
    "reward lint before step 1 (r1 rewards lint): error stops the run when the gold answer does not score "           \
    "full marks or an empty, echoed or format-only completion does; warn only logs it; off skips it",                 \
    true)                                                                                                             \
  F(int64_t, lint_probes, 16, "training prompts the reward lint scores", x >= 1 && x <= 4096)
  R1_CONFIG(RewardsConfig, R1_REWARDS_FIELDS)
};

}  // namespace r1::rewards
