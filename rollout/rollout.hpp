// rollout/: owns sampling (temperature, top-p/k, min-p, stop strings) over a batched KV cache and
// the rollout workers that turn prompts into scored groups with log-probs and policy versions.
// Depends on policy/ only. Filled by the rollout-engine milestone; nothing here yet.
#pragma once
