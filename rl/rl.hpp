// rl/: owns the GRPO objective and its variants (DAPO, Dr. GRPO, GSPO, RLOO, KL k1/k2/k3), the
// training loop, data parallelism and checkpoints. Depends on rollout/ and rewards/. Filled by the
// GRPO-trainer and data-parallel milestones; nothing here yet.
#pragma once
