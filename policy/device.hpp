// Devices: parsing "cpu" / "cuda" / "cuda:N" with clear errors, and what the build supports.
#pragma once
#include <c10/core/Device.h>

#include <string>

namespace r1 {

// "cpu", "cuda", "cuda:N". Errors when CUDA is requested but not compiled in or not present.
c10::Device parse_device(const std::string& name);
bool cuda_compiled();          // built with R1_CUDA
bool cuda_available();         // compiled in and a GPU is visible
std::string device_summary();  // one line for logs: build flavour and visible devices
// Memory of a device in bytes: "cpu": MemTotal, or the cgroup's memory.max when lower; "cuda[:N]":
// the GPU's total memory. 0 when it cannot be read.
double device_memory_bytes(const std::string& device);
// Most bytes LibTorch's caching allocator has reserved on a CUDA device since the last reset; 0 on CPU.
double device_peak_bytes(const c10::Device& device);
void reset_device_peak(const c10::Device& device);

// Gives the calling thread n CPU threads for its ops, for good. LibTorch keeps one global count that
// each thread adopts lazily, the first time it runs parallel code in a library, so another thread's
// later at::set_num_threads (a rollout worker's 1) would otherwise leak into this one (the trainer
// then ran on one thread). Call it in each thread that needs its own count, before starting others.
void pin_cpu_threads(int n);

}  // namespace r1
