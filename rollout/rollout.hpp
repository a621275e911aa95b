// rollout/: owns turning prompts into sampled completions. sampling.hpp (temperature, top-k/p,
// min-p, per-sequence random streams), engine.hpp (batched KV-cache generation with prefix sharing
// and compaction), dataset.hpp (JSONL prompts, templates, seeded epochs, rank sharding),
// weights.hpp (versioned, checksummed weight sync) and workers.hpp (rollout threads overlapping
// generation with reward scoring). Depends on policy/ only; rewards arrive as a callback.
#pragma once
#include "rollout/dataset.hpp"
#include "rollout/engine.hpp"
#include "rollout/sampling.hpp"
#include "rollout/weights.hpp"
#include "rollout/workers.hpp"
