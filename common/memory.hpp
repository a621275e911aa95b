// Process-wide allocator settings for programs that run LibTorch on CPU (r1 and the benches).
#pragma once

namespace r1 {

// glibc hands freed blocks of more than ~128 KiB-32 MiB back to the kernel (munmap, heap trim), so
// every op that allocates an activation of that size pays page faults again: ~9% of a batched
// generation and up to a quarter of a prefill on 2 cores (bench_generate, docs/BENCHMARKS.md).
// This keeps freed memory in the process for reuse, as the Python trainers get from jemalloc or
// tcmalloc. Resident memory stays at its high-water mark instead of shrinking. Call once, early.
void keep_freed_memory();

// Hands every free page of every allocator arena back to the kernel (malloc_trim). The trainer
// calls it once per step, so that what one phase freed (the rollout's KV caches, the update's
// activations and gradients) is not kept beside what the next phase allocates: the peak stays
// the largest phase, not the sum of every arena's high-water mark. Costs a few milliseconds.
void release_freed_memory();

}  // namespace r1
