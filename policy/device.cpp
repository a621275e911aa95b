#include "policy/device.hpp"

#include <ATen/Parallel.h>

#include <fstream>
#include <sstream>

#include "common/error.hpp"

#ifdef R1_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

namespace r1 {

void pin_cpu_threads(int n) {
  at::set_num_threads(n);
  at::internal::lazy_init_num_threads();  // this program's copy of LibTorch's lazy initializer
  at::zeros({1 << 16}).add_(1.0);         // LibTorch's own copy: the op runs at::parallel_for inside it
  at::set_num_threads(n);                 // whatever global count the initializers read, this thread has n
}

double device_peak_bytes(const c10::Device& device) {
#ifdef R1_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
    return static_cast<double>(
        stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak);
  }
#endif
  (void)device;
  return 0;
}

void reset_device_peak(const c10::Device& device) {
#ifdef R1_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : 0);
#endif
  (void)device;
}

double device_memory_bytes(const std::string& device) {
  if (device.rfind("cuda", 0) == 0) {
#ifdef R1_WITH_CUDA
    const c10::Device d = parse_device(device);
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d.has_index() ? d.index() : 0) == cudaSuccess)
      return static_cast<double>(prop.totalGlobalMem);
#endif
    return 0;
  }
  double total = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);)
    if (line.rfind("MemTotal:", 0) == 0) total = std::stod(line.substr(9)) * 1024.0;  // "MemTotal:  N kB"
  std::ifstream cg("/sys/fs/cgroup/memory.max");
  std::string limit;
  if (cg >> limit && limit != "max" && (total == 0 || std::stod(limit) < total)) total = std::stod(limit);
  return total;
}

bool cuda_compiled() {
#ifdef R1_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() {
#ifdef R1_WITH_CUDA
  return c10::cuda::device_count() > 0;
#else
  return false;
#endif
}

c10::Device parse_device(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    R1_CHECK(cuda_compiled(), "device '{}' requested, but this r1 was built without CUDA (configure with -DR1_CUDA=ON)",
             name);
    R1_CHECK(cuda_available(), "device '{}' requested, but no CUDA GPU is visible", name);
    c10::Device d(name);
#ifdef R1_WITH_CUDA
    R1_CHECK(!d.has_index() || d.index() < c10::cuda::device_count(), "device '{}' does not exist: {} GPU(s) visible",
             name, static_cast<int>(c10::cuda::device_count()));
#endif
    return d;
  }
  fail("unknown device '{}' (use cpu, cuda or cuda:N)", name);
}

std::string device_summary() {
  std::string s = fmt::format("LibTorch CPU threads {}", at::get_num_threads());
#ifdef R1_WITH_CUDA
  int n = c10::cuda::device_count();
  s += fmt::format("; CUDA build, {} GPU(s)", n);
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) == cudaSuccess) s += fmt::format("; cuda:{} {}", i, prop.name);
  }
#else
  s += "; CPU-only build";
#endif
  return s;
}

}  // namespace r1
