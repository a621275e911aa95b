// Devices: parsing "cpu" / "cuda" / "cuda:N" with clear errors, and what the build supports.
#pragma once
#include <c10/core/Device.h>

#include <string>

namespace r1 {

// "cpu", "cuda", "cuda:N". Errors when CUDA is requested but not compiled in or not present.
c10::Device parse_device(const std::string& name);
bool cuda_compiled();   // built with R1_CUDA
bool cuda_available();  // compiled in and a GPU is visible
std::string device_summary();  // one line for logs: build flavour and visible devices

}  // namespace r1
