/* Example reward plugin in C: scores 1 when the completion contains a keyword (option "keyword",
 * default "therefore"), plus a part "length" with the completion length. Two test hooks show what
 * r1 does with bad plugins: a completion containing "CRASH" aborts the process (use isolated mode),
 * and one containing "FAIL" returns an error for that sample. Build: see CMakeLists.txt. */
#include <stdlib.h>
#include <string.h>

#include "rewards/plugin_abi.h"

#ifndef KEYWORD_ABI_VERSION
#define KEYWORD_ABI_VERSION R1_REWARD_ABI_VERSION
#endif

typedef struct {
  char keyword[128];
} instance;

static int contains(const char* hay, size_t n, const char* needle) {
  size_t m = strlen(needle);
  if (m == 0 || m > n) return 0;
  for (size_t i = 0; i + m <= n; ++i)
    if (memcmp(hay + i, needle, m) == 0) return 1;
  return 0;
}

/* Minimal option parsing: finds "keyword": "..." in the options JSON. */
static void* create(const char* options, size_t len, char* err, size_t err_len) {
  instance* in = (instance*)calloc(1, sizeof(instance));
  if (!in) return NULL;
  strcpy(in->keyword, "therefore");
  const char* key = "\"keyword\"";
  const char* p = NULL;
  for (size_t i = 0; i + strlen(key) <= len; ++i)
    if (memcmp(options + i, key, strlen(key)) == 0) { p = options + i + strlen(key); break; }
  if (p) {
    const char* q = memchr(p, '"', (size_t)(options + len - p));
    const char* e = q ? memchr(q + 1, '"', (size_t)(options + len - q - 1)) : NULL;
    if (!q || !e || (size_t)(e - q - 1) >= sizeof in->keyword) {
      strncpy(err, "option \"keyword\" must be a string shorter than 128 bytes", err_len - 1);
      free(in);
      return NULL;
    }
    memcpy(in->keyword, q + 1, (size_t)(e - q - 1));
    in->keyword[e - q - 1] = 0;
  }
  return in;
}

static int score(void* inst, const r1_reward_sample* s, const r1_reward_output* out) {
  instance* in = (instance*)inst;
  if (contains(s->completion, s->completion_len, "CRASH")) abort();
  if (contains(s->completion, s->completion_len, "FAIL")) {
    const char* why = "asked to fail";
    out->set_reason(out->ctx, why, strlen(why));
    return 1;
  }
  int hit = contains(s->completion, s->completion_len, in->keyword);
  out->set_score(out->ctx, hit ? 1.0 : 0.0);
  out->add_part(out->ctx, "length", 6, (double)s->completion_len);
  out->set_reason(out->ctx, hit ? "keyword found" : "keyword missing", hit ? 13 : 15);
  return 0;
}

static void destroy(void* inst) { free(inst); }

static const r1_reward_plugin plugin = {KEYWORD_ABI_VERSION, sizeof(r1_reward_plugin), "keyword", create, score, destroy};

const r1_reward_plugin* r1_reward_plugin_entry(void) { return &plugin; }
