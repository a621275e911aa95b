/* r1.cpp reward plugin ABI: a custom checker in a shared library.
 *
 * A plugin exports one function, `r1_reward_plugin_entry`, returning a static descriptor. r1
 * checks `abi_version` against R1_REWARD_ABI_VERSION and refuses a mismatch with a clear error
 * (rebuild the plugin against this header). All strings are UTF-8 with explicit lengths; nothing
 * crosses the boundary that needs freeing by the other side. C only, so any language with a C FFI
 * can implement it.
 *
 * Threading: `score` is called concurrently from several threads on one instance; make it
 * thread-safe (or guard it yourself). Crashes: in-process plugins share the address space; set
 * `isolated = true` in [[rewards.plugins]] to run the plugin in a helper process so that a crash is
 * an error for that sample only. */
#ifndef R1_REWARDS_PLUGIN_ABI_H
#define R1_REWARDS_PLUGIN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define R1_REWARD_ABI_VERSION 1u

/* One sample. The reference fields (answer, tests, target, ...) and metadata arrive as JSON
 * object text. completion_tokens is -1 when unknown. */
typedef struct r1_reward_sample {
  const char* prompt;
  size_t prompt_len;
  const char* completion;
  size_t completion_len;
  const char* reference_json;
  size_t reference_json_len;
  const char* metadata_json;
  size_t metadata_json_len;
  int64_t completion_tokens;
} r1_reward_sample;

/* Where the plugin writes its result; valid only during the `score` call. */
typedef struct r1_reward_output {
  void* ctx;
  void (*set_score)(void* ctx, double score);
  void (*add_part)(void* ctx, const char* name, size_t name_len, double value);
  void (*set_reason)(void* ctx, const char* text, size_t len);
} r1_reward_output;

typedef struct r1_reward_plugin {
  uint32_t abi_version; /* R1_REWARD_ABI_VERSION the plugin was compiled with */
  uint32_t struct_size; /* sizeof(r1_reward_plugin) as the plugin saw it */
  const char* name;     /* for messages */
  /* Creates an instance from the entry's `options` (JSON object text, "{}" when none). On failure
   * returns NULL and writes a message into err (at most err_len bytes, NUL-terminated). */
  void* (*create)(const char* options_json, size_t options_len, char* err, size_t err_len);
  /* Scores one sample. Returns 0 on success; non-zero is an error for this sample, with the
   * message given through out->set_reason. */
  int (*score)(void* instance, const r1_reward_sample* sample, const r1_reward_output* out);
  void (*destroy)(void* instance);
} r1_reward_plugin;

/* The one exported symbol. */
typedef const r1_reward_plugin* (*r1_reward_plugin_entry_fn)(void);
#define R1_REWARD_PLUGIN_ENTRY "r1_reward_plugin_entry"

#ifdef __cplusplus
}
#endif

#endif /* R1_REWARDS_PLUGIN_ABI_H */
