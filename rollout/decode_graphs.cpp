#include "rollout/decode_graphs.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "rollout/sampling.hpp"

#ifdef R1_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace r1 {

std::vector<int64_t> decode_buckets(int64_t max_batch) {
  std::vector<int64_t> out;
  for (int64_t b : {1, 2, 4})
    if (b < max_batch) out.push_back(b);
  for (int64_t b = 8; b < max_batch; b += 8) out.push_back(b);
  out.push_back(max_batch);
  return out;
}

// One batch size: the step's inputs and outputs at fixed addresses, and its graph once captured.
struct DecodeGraphs::Bucket {
  int64_t rows = 0;
  at::Tensor columns;   // [rows, 3 + 2 + max_blocks] int64 on the device (PagedBatch::host's layout)
  at::Tensor uniforms;  // [rows] float32 on the device
  at::Tensor packed;    // [rows, 3] float64 on the device: the step's results
#ifdef R1_WITH_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph;
#endif
  bool ready = false;  // captured (or, without capture, allocated)
};

struct DecodeGraphs::Pool {
#ifdef R1_WITH_CUDA
  at::cuda::MempoolId_t id = at::cuda::graph_pool_handle();
#endif
};

DecodeGraphs::DecodeGraphs(DecodeGraphMode mode, const at::Device& device, int64_t max_batch, int64_t max_blocks,
                           int64_t block_size, Step step)
    : capture_(mode == DecodeGraphMode::cuda && device.is_cuda()),
      device_(device),
      max_blocks_(max_blocks),
      block_size_(block_size),
      step_(std::move(step)) {
  R1_CHECK(mode != DecodeGraphMode::off, "DecodeGraphs: mode off runs the dynamic-shape step instead");
  R1_CHECK(max_batch >= 1 && max_blocks >= 1 && block_size >= 1, "DecodeGraphs: max_batch {}, max_blocks {}", max_batch,
           max_blocks);
#ifndef R1_WITH_CUDA
  R1_CHECK(!capture_, "DecodeGraphs: this r1 was built without CUDA");
#endif
  for (int64_t rows : decode_buckets(max_batch)) {
    auto b = std::make_unique<Bucket>();
    b->rows = rows;
    buckets_.push_back(std::move(b));
  }
  if (capture_) pool_ = std::make_unique<Pool>();
}

DecodeGraphs::~DecodeGraphs() = default;

int64_t DecodeGraphs::captured() const {
  int64_t n = 0;
  for (const auto& b : buckets_) n += b->ready && capture_;
  return n;
}

DecodeGraphs::Bucket& DecodeGraphs::bucket_for(int64_t rows) {
  for (auto& b : buckets_)
    if (b->rows >= rows) return *b;
  fail("DecodeGraphs: {} rows exceed the largest bucket ({})", rows, buckets_.back()->rows);
}

at::Tensor DecodeGraphs::call(Bucket& b) {
  // The views and int32 tables are made inside the call, so a captured graph re-reads the columns.
  return step_(paged_input(b.columns, 1, max_blocks_ * block_size_, /*fresh=*/false), b.uniforms);
}

// Allocates the bucket's inputs; with capture, runs the step once on a side stream (lazy
// initialisation: cuBLAS handles, workspaces) and then records it as the bucket's graph.
void DecodeGraphs::prepare(Bucket& b) {
  const auto opts = at::TensorOptions().device(device_);
  b.columns = at::zeros({b.rows, 5 + max_blocks_}, opts.dtype(at::kLong));
  b.columns.select(1, 4).fill_(1);  // every row a padding row until written: one key, the scratch slot
  b.uniforms = at::full({b.rows}, 0.5, opts.dtype(at::kFloat));
  if (capture_) record(b);
  b.ready = true;
}

void DecodeGraphs::record(Bucket& b) {
#ifdef R1_WITH_CUDA
  c10::cuda::CUDAGuard guard(device_);
  c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device_.index());
  c10::cuda::device_synchronize();
  {
    c10::cuda::CUDAStreamGuard on_side(side);
    call(b);  // warm-up: what the first call of each kernel sets up stays out of the graph
    side.synchronize();
    b.graph = std::make_unique<at::cuda::CUDAGraph>();
    // Thread-local capture: a trainer thread may use the device meanwhile (max_policy_lag = 1).
    b.graph->capture_begin(pool_->id, cudaStreamCaptureModeThreadLocal);
    try {
      b.packed = call(b);
    } catch (const std::exception& e) {
      // Leave capture mode (the stream, then the allocator's routing to the pool) before reporting.
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(side.stream(), &g);
      if (g) cudaGraphDestroy(g);
      c10::cuda::CUDACachingAllocator::endAllocateToPool(c10::cuda::current_device(), pool_->id);
      (void)cudaGetLastError();
      (void)b.graph.release();  // never destroyed: its capture did not end through it
      fail(
          "capturing the decode step at batch {} as a CUDA graph failed ([rollout] cuda_graphs = false decodes "
          "without graphs): {}",
          b.rows, e.what());
    }
    b.graph->capture_end();
  }
  c10::cuda::device_synchronize();
#else
  (void)b;
#endif
}

std::vector<std::array<double, 3>> DecodeGraphs::run(const PagedBatch& batch, const at::Tensor& uniforms) {
  R1_CHECK(batch.width() == 1, "DecodeGraphs: decode steps feed one token per row, got {}", batch.width());
  const int64_t B = batch.rows();
  Bucket& b = bucket_for(B);
  if (!b.ready) prepare(b);
  // One host-to-device copy of the step's integer inputs, one of its uniforms.
  b.columns.copy_(batch.host(b.rows, max_blocks_));
  if (uniforms.defined()) b.uniforms.narrow(0, 0, B).copy_(uniforms);
  at::Tensor packed;
#ifdef R1_WITH_CUDA
  if (capture_) {
    b.graph->replay();
    packed = b.packed;
  }
#endif
  if (!capture_) packed = call(b);
  return packed_rows(packed, B);
}

}  // namespace r1
