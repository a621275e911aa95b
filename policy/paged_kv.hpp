// The paged KV cache: keys and values live in fixed-size blocks of a per-layer pool, and each
// sequence has a block table. Sequences that continue one prompt (a GRPO group's G samples) share
// the prompt's blocks; a shared block that is only partly filled is copied the first time one of
// them appends to it (copy-on-write). Memory in use is the sum of the live sequences' lengths,
// rounded up to blocks, not batch x maximum length.
//
// Block 0 is scratch: never handed out, it absorbs the writes of padding tokens and fills the
// unused tail of a padded block table.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "policy/model_config.hpp"

namespace r1 {

// Reference counts over block ids [1, capacity]. Hands out the lowest free id, so the pool pages a
// run touches stay as few as its peak use.
class BlockAllocator {
 public:
  explicit BlockAllocator(int64_t blocks = 0);  // usable blocks (the scratch block comes on top)
  int32_t allocate();                           // throws when none is free
  void retain(int32_t block);
  void release(int32_t block);  // frees the block when its last holder releases it
  int64_t refcount(int32_t block) const;
  int64_t capacity() const { return static_cast<int64_t>(refs_.size()) - 1; }
  int64_t used() const { return used_; }
  int64_t free() const { return capacity() - used_; }
  int64_t peak_used() const { return peak_; }
  void reset_peak() { peak_ = used_; }

 private:
  std::vector<int32_t> refs_;       // [capacity + 1]; refs_[0] (scratch) stays 0
  std::vector<int32_t> free_heap_;  // min-heap of free ids
  int64_t used_ = 0, peak_ = 0;
};

// One sequence's blocks: token t of the sequence is slot t % block_size of blocks[t / block_size].
struct BlockTable {
  std::vector<int32_t> blocks;
  int64_t length = 0;  // tokens whose keys and values are stored
};

struct PagedKVOptions {
  int64_t blocks = 0;       // usable blocks per layer
  int64_t block_size = 16;  // tokens per block
};

class PagedKVCache {
 public:
  PagedKVCache() = default;
  // Pools of [blocks + 1, block_size, Hkv, D] per layer for keys and values. On CPU the pages of
  // blocks never used are never touched.
  PagedKVCache(const ModelConfig& c, PagedKVOptions o, const at::TensorOptions& opts);

  int64_t block_size() const { return block_size_; }
  int64_t blocks_for(int64_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }
  int64_t bytes_per_block() const;  // keys and values of every layer
  const BlockAllocator& allocator() const { return alloc_; }
  BlockAllocator& allocator() { return alloc_; }

  // A table sharing every block of `t` (each gains a holder).
  BlockTable fork(const BlockTable& t);
  // Drops the table's blocks (freed when no other table holds them).
  void release(BlockTable& t);
  // Makes room for `n` more tokens of `t` and appends their flat slots (block * block_size +
  // offset) to `slots`; length grows by n. A shared last block that would be written is copied
  // first. The caller writes the keys and values (CausalLM::forward_paged).
  void append(BlockTable& t, int64_t n, std::vector<int64_t>& slots);

  std::vector<at::Tensor> k, v;  // per layer [blocks + 1, block_size, Hkv, D]

 private:
  void copy_block(int32_t from, int32_t to);
  BlockAllocator alloc_;
  int64_t block_size_ = 16;
};

}  // namespace r1
