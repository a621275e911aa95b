// The decode step at fixed shapes, captured as CUDA graphs. A step's device work (forward over the
// paged KV cache, logits, sampling, stop-token check) depends on host values only through its
// shapes; so with the batch padded to a bucket (1, 2, 4, 8, then multiples of 8 up to max_batch)
// and the block tables padded to the run's widest, each bucket is one CUDA graph, captured the
// first time a step of its size runs and replayed after one host-to-device copy of the step's
// inputs (ids, positions, slots, lengths, block tables, uniforms). Without a GPU the same
// fixed-shape steps can run eagerly (DecodeGraphMode::shapes_only), which is how the CPU tests
// check the graphs' padding and shapes against the engine's own steps.
#pragma once
#include <array>
#include <functional>
#include <memory>
#include <vector>

#include "policy/model.hpp"
#include "policy/paged_kv.hpp"

namespace r1 {

enum class DecodeGraphMode {
  cuda,         // CUDA graphs on a CUDA device; the dynamic-shape step elsewhere
  off,          // the dynamic-shape step everywhere
  shapes_only,  // the graphs' fixed shapes, run eagerly without capture (tests, CPU)
};

// Batch-size buckets up to max_batch: 1, 2, 4, 8, 16, 24, ..., max_batch.
std::vector<int64_t> decode_buckets(int64_t max_batch);

class DecodeGraphs {
 public:
  // The step's device work on inputs of a fixed shape: PagedInput (T = 1, max_len = the table
  // width's keys) and uniforms [B] float32 on the device -> [B, 3] float64 (sample_packed).
  using Step = std::function<at::Tensor(const PagedInput&, const at::Tensor& uniforms)>;

  DecodeGraphs(DecodeGraphMode mode, const at::Device& device, int64_t max_batch, int64_t max_blocks,
               int64_t block_size, Step step);
  ~DecodeGraphs();

  // The step for the batch's rows (uniforms [B] float32 on the host, undefined when greedy): [B, 3]
  // on the host. Pads to the bucket; captures the bucket's graph on its first use.
  std::vector<std::array<double, 3>> run(const PagedBatch& batch, const at::Tensor& uniforms);

  int64_t captured() const;  // graphs captured so far
  bool capturing() const { return capture_; }

 private:
  struct Bucket;
  Bucket& bucket_for(int64_t rows);
  void prepare(Bucket& b);     // inputs allocated; with capture, the graph recorded
  void record(Bucket& b);      // the capture (CUDA)
  at::Tensor call(Bucket& b);  // the step over the bucket's inputs

  bool capture_;
  at::Device device_;
  int64_t max_blocks_, block_size_;
  Step step_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  struct Pool;
  std::unique_ptr<Pool> pool_;  // the graphs' shared memory pool (CUDA only)
};

}  // namespace r1
