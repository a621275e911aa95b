// Shared-library checkers through the versioned C ABI (plugin_abi.h).
#include <dlfcn.h>

#include <boost/json.hpp>
#include <filesystem>
#include <mutex>

#include "common/error.hpp"
#include "rewards/plugin_abi.h"
#include "rewards/plugins.hpp"

namespace r1::rewards {
namespace {

class PluginChecker final : public Checker {
 public:
  PluginChecker(const r1_reward_plugin* api, void* inst, std::string name)
      : api_(api), inst_(inst), name_(std::move(name)) {}
  ~PluginChecker() override {
    if (api_->destroy) api_->destroy(inst_);
  }

  CheckResult check(const Sample& s, const Deadline& dl) const override {
    dl.check();
    std::string ref = boost::json::serialize(s.reference), meta = boost::json::serialize(s.metadata);
    r1_reward_sample in{s.prompt.data(),     s.prompt.size(), s.completion.data(),
                        s.completion.size(), ref.data(),      ref.size(),
                        meta.data(),         meta.size(),     s.completion_tokens ? *s.completion_tokens : -1};
    CheckResult r;
    r1_reward_output out{
        &r, [](void* ctx, double v) { static_cast<CheckResult*>(ctx)->score = v; },
        [](void* ctx, const char* n, size_t len, double v) {
          static_cast<CheckResult*>(ctx)->parts.emplace_back(std::string(n, len), v);
        },
        [](void* ctx, const char* t, size_t len) { static_cast<CheckResult*>(ctx)->reason.assign(t, len); }};
    int rc = api_->score(inst_, &in, &out);
    if (rc != 0) {
      r.status = Status::error;
      r.score = 0;
      if (r.reason.empty()) r.reason = "plugin '" + name_ + "' failed with code " + std::to_string(rc);
    }
    return r;
  }

 private:
  const r1_reward_plugin* api_;
  void* inst_;
  std::string name_;
};

}  // namespace

CheckerPtr make_plugin_checker(const PluginDecl& decl, const std::string& options_json) {
  std::string where = "reward plugin '" + decl.name + "' (" + decl.library + ")";
  if (decl.isolated) {
    CommandDecl cmd;
    cmd.name = decl.name;
    cmd.command = {plugin_host_path(), decl.library};
    cmd.timeout_ms = decl.timeout_ms;
    cmd.processes = 1;
    return make_command_checker(cmd, options_json);
  }
  // RTLD_NODELETE: never unmapped, even if a handle is closed, since abandoned threads may run it.
  void* h = dlopen(decl.library.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!h) {
    const char* e = dlerror();
    throw ConfigError(where + ": cannot load: " + (e ? e : "unknown error") +
                      (std::filesystem::exists(decl.library)
                           ? ""
                           : " (the file does not exist; paths are relative to the working directory)"));
  }
  auto entry = reinterpret_cast<r1_reward_plugin_entry_fn>(dlsym(h, R1_REWARD_PLUGIN_ENTRY));
  if (!entry)
    throw ConfigError(where + ": does not export " R1_REWARD_PLUGIN_ENTRY "(); build it against rewards/plugin_abi.h");
  const r1_reward_plugin* api = entry();
  if (!api) throw ConfigError(where + ": " R1_REWARD_PLUGIN_ENTRY "() returned NULL");
  if (api->abi_version != R1_REWARD_ABI_VERSION)
    throw ConfigError(
        fmt::format("{}: built for reward plugin ABI version {}, but this r1 speaks version {}; "
                    "rebuild the plugin against this r1's rewards/plugin_abi.h",
                    where, api->abi_version, R1_REWARD_ABI_VERSION));
  if (api->struct_size < sizeof(r1_reward_plugin) || !api->create || !api->score)
    throw ConfigError(where + ": incomplete plugin descriptor (struct_size, create and score are required)");
  char err[512] = {0};
  void* inst = api->create(options_json.data(), options_json.size(), err, sizeof err);
  if (!inst)
    throw ConfigError(where + ": refused its options " + options_json + ": " + (err[0] ? err : "no reason given"));
  return std::make_shared<PluginChecker>(api, inst, decl.name);
}

}  // namespace r1::rewards
