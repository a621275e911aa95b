// AdamW whose step works through each parameter in chunks. torch::optim::AdamW's step makes two
// temporaries the size of the parameter it updates (sqrt(v), then its quotient): for the tied
// embedding of Qwen2.5-0.5B, [151936, 896] float32, 1.09 GB on top of the weights, gradients and
// moments, at the moment the step is the run's peak. Here the temporaries are at most 2 x `chunk`
// elements (32 MiB at the default); the update of every element is the same op sequence as
// torch::optim::AdamW's, so the values are bit for bit the same. State, param groups, options and
// checkpoints are AdamW's own (rl/checkpoint.hpp reads AdamWParamState).
#pragma once
#include <torch/optim/adamw.h>

#include <cstdint>
#include <vector>

namespace r1 {

class ChunkedAdamW : public torch::optim::AdamW {
 public:
  static constexpr int64_t kDefaultChunk = int64_t{1} << 22;  // elements per temporary

  ChunkedAdamW(std::vector<at::Tensor> params, torch::optim::AdamWOptions options, int64_t chunk = kDefaultChunk);

  // One update of every parameter with a gradient. amsgrad and closures are refused.
  at::Tensor step(LossClosure closure = nullptr) override;

 private:
  torch::optim::AdamWParamState& state_of(const at::Tensor& p);
  int64_t chunk_;
};

}  // namespace r1
