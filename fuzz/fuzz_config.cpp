// The TOML config loader on arbitrary text: TOML++'s parser, the typed reader of every section of
// a run config (r1 train's file) and one `--set` override. Input: the override, a newline, the
// file. A bad file is a ConfigError, never a crash; a file that loads prints (r1 config show) as
// TOML that loads back to the same config.
#include <cstdint>
#include <string>

#include "common/config.hpp"
#include "fuzz/fuzz.hpp"
#include "rl/run_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto [override_line, file] = r1::fuzz::split_line(in);
  std::vector<std::string> sets;
  if (!override_line.empty()) sets.emplace_back(override_line);

  std::string shown;
  try {
    shown = r1::cfg::to_toml(r1::cfg::load<r1::RunConfig>(r1::cfg::parse_string(file, "fuzz.toml"), sets));
  } catch (const r1::ConfigError&) {
    return 0;
  }
  std::string again;
  try {
    again = r1::cfg::to_toml(r1::cfg::load<r1::RunConfig>(r1::cfg::parse_string(shown, "shown.toml"), {}));
  } catch (const r1::ConfigError& e) {
    std::fprintf(stderr, "%s\n--- shown:\n%s\n", e.what(), shown.c_str());
    r1::fuzz::finding("a config that loaded does not load back from its own TOML");
  }
  if (again != shown) r1::fuzz::finding("config -> TOML -> config changed the config");
  return 0;
}
