#include "policy/paged_kv.hpp"

#include <algorithm>
#include <functional>

#include "common/error.hpp"

namespace r1 {

BlockAllocator::BlockAllocator(int64_t blocks) : refs_(static_cast<size_t>(blocks) + 1, 0) {
  R1_CHECK(blocks >= 0 && blocks < (int64_t{1} << 31) - 1, "KV cache: {} blocks is out of range", blocks);
  for (int64_t b = 1; b <= blocks; ++b) free_heap_.push_back(static_cast<int32_t>(b));
  std::make_heap(free_heap_.begin(), free_heap_.end(), std::greater<>());
}

int32_t BlockAllocator::allocate() {
  R1_CHECK(!free_heap_.empty(), "KV cache: all {} blocks are in use", capacity());
  std::pop_heap(free_heap_.begin(), free_heap_.end(), std::greater<>());
  const int32_t b = free_heap_.back();
  free_heap_.pop_back();
  refs_[b] = 1;
  peak_ = std::max(peak_, ++used_);
  return b;
}

void BlockAllocator::retain(int32_t b) {
  R1_CHECK(b >= 1 && b <= capacity() && refs_[b] > 0, "KV cache: retain of block {}, which is not in use", b);
  ++refs_[b];
}

void BlockAllocator::release(int32_t b) {
  R1_CHECK(b >= 1 && b <= capacity() && refs_[b] > 0, "KV cache: release of block {}, which is not in use", b);
  if (--refs_[b] > 0) return;
  free_heap_.push_back(b);
  std::push_heap(free_heap_.begin(), free_heap_.end(), std::greater<>());
  --used_;
}

int64_t BlockAllocator::refcount(int32_t b) const {
  R1_CHECK(b >= 0 && b <= capacity(), "KV cache: block {} is out of range", b);
  return refs_[b];
}

PagedKVCache::PagedKVCache(const ModelConfig& c, PagedKVOptions o, const at::TensorOptions& opts)
    : alloc_(o.blocks), block_size_(o.block_size) {
  R1_CHECK(o.block_size >= 1 && o.block_size <= 1024, "KV cache: block_size {} must be in [1, 1024]", o.block_size);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    k.push_back(at::empty({o.blocks + 1, o.block_size, c.num_key_value_heads, c.head_dim}, opts));
    v.push_back(at::empty({o.blocks + 1, o.block_size, c.num_key_value_heads, c.head_dim}, opts));
  }
  if (!k.empty()) {  // finite scratch: padded table entries point here and are read (masked) by the generic path
    for (auto& t : k) t[0].zero_();
    for (auto& t : v) t[0].zero_();
  }
}

int64_t PagedKVCache::bytes_per_block() const {
  int64_t n = 0;
  for (const auto* pool : {&k, &v})
    for (const auto& t : *pool) n += t[0].numel() * static_cast<int64_t>(t.element_size());
  return n;
}

BlockTable PagedKVCache::fork(const BlockTable& t) {
  for (int32_t b : t.blocks) alloc_.retain(b);
  return t;
}

void PagedKVCache::release(BlockTable& t) {
  for (int32_t b : t.blocks) alloc_.release(b);
  t.blocks.clear();
  t.length = 0;
}

void PagedKVCache::copy_block(int32_t from, int32_t to) {
  for (auto* pool : {&k, &v})
    for (auto& t : *pool) t[to].copy_(t[from]);
}

void PagedKVCache::append(BlockTable& t, int64_t n, std::vector<int64_t>& slots) {
  R1_CHECK(n >= 0, "KV cache: append of {} tokens", n);
  R1_CHECK(static_cast<int64_t>(t.blocks.size()) == blocks_for(t.length),
           "KV cache: a table of {} tokens holds {} blocks", t.length, t.blocks.size());
  for (int64_t i = 0; i < n; ++i, ++t.length) {
    const int64_t off = t.length % block_size_;
    if (off == 0) {
      t.blocks.push_back(alloc_.allocate());
    } else if (alloc_.refcount(t.blocks.back()) > 1) {  // copy-on-write of a shared, partly filled block
      const int32_t mine = alloc_.allocate();
      copy_block(t.blocks.back(), mine);
      alloc_.release(t.blocks.back());
      t.blocks.back() = mine;
    }
    slots.push_back(static_cast<int64_t>(t.blocks.back()) * block_size_ + off);
  }
}

}  // namespace r1
