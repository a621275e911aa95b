// Activation checkpointing: a function of tensors whose intermediate results are not kept for
// backward. Forward runs it and keeps only its inputs and outputs; backward runs it again
// (restoring the random-number state it first saw) and backpropagates through that, so the
// parameters it uses receive their gradients as if nothing had been dropped. Parameters get them
// through a nested backward into their .grad, as in PyTorch's reentrant checkpoint: use
// Tensor::backward(), not torch::autograd::grad, which would not see them.
// A checkpointed decoder layer keeps its input [B, T, H] instead of every saved intermediate
// (about 5 H + 4 Hq*D + 3 Hkv*D + 4 I elements per token; rl/memory_plan.cpp counts the same).
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <vector>

namespace r1 {

using RecomputeFn = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>& inputs)>;

// fn(inputs), recomputed in backward. Outputs require grad when grad mode is on, even if no input
// does (frozen embeddings ahead of trainable adapters still get gradients). `fn` must be pure: the
// same inputs and random state give the same outputs.
std::vector<at::Tensor> recompute_in_backward(RecomputeFn fn, const std::vector<at::Tensor>& inputs);

}  // namespace r1
