#include "common/memory.hpp"

#include <malloc.h>

namespace r1 {

void keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 512 << 20);  // blocks up to 512 MiB come from the heap, not fresh mmaps
  mallopt(M_TRIM_THRESHOLD, 1 << 30);    // never shrink the heap below 1 GiB of free top space
  mallopt(M_TOP_PAD, 64 << 20);          // grow it in 64 MiB steps
}

void release_freed_memory() { malloc_trim(0); }

}  // namespace r1
