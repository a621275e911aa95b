# Imported LibTorch targets from the unpacked PyPI wheel (scripts/setup.sh puts it in R1_DEPS_DIR).
# We do not use the wheel's TorchConfig.cmake: it probes CUDA at configure time and drags in flags we
# do not want. What the wheel needs is written down in docs/DEPENDENCIES.md.
#   r1::torch       CPU LibTorch (libtorch_cpu + libc10)
#   r1::torch_cuda  adds libtorch_cuda + libc10_cuda (only when R1_CUDA is ON)

file(STRINGS "${PROJECT_SOURCE_DIR}/deps.env" _pin REGEX "^TORCH_VERSION=")
string(REPLACE "TORCH_VERSION=" "" R1_TORCH_VERSION "${_pin}")
set(R1_DEPS_DIR "$ENV{HOME}/.cache/r1cpp" CACHE PATH "Where scripts/setup.sh unpacks LibTorch")
set(R1_TORCH_DIR "${R1_DEPS_DIR}/torch-${R1_TORCH_VERSION}/torch" CACHE PATH "Unpacked torch/ folder of the wheel")
if(NOT EXISTS "${R1_TORCH_DIR}/lib/libtorch_cpu.so")
  message(FATAL_ERROR "LibTorch ${R1_TORCH_VERSION} not found at ${R1_TORCH_DIR}. Run scripts/setup.sh "
                      "(or pass -DR1_TORCH_DIR=/path/to/site-packages/torch).")
endif()
set(R1_TORCH_EXTRA_LIB_DIR "${R1_TORCH_DIR}/../extra")

add_library(r1_torch_c10 SHARED IMPORTED GLOBAL)
set_target_properties(r1_torch_c10 PROPERTIES IMPORTED_LOCATION "${R1_TORCH_DIR}/lib/libc10.so")
add_library(r1::torch SHARED IMPORTED GLOBAL)
set_target_properties(r1::torch PROPERTIES
  IMPORTED_LOCATION "${R1_TORCH_DIR}/lib/libtorch_cpu.so"
  INTERFACE_INCLUDE_DIRECTORIES "${R1_TORCH_DIR}/include;${R1_TORCH_DIR}/include/torch/csrc/api/include"
  INTERFACE_LINK_LIBRARIES r1_torch_c10)
# The wheel is built with the C++11 ABI (its symbols carry __cxx11), which is GCC's default.
# LibTorch bundles fmt 12 headers, which shadow Debian's fmt 9 in its include path; use them header-only
# (fmt's versioned inline namespaces keep the two apart).
target_compile_definitions(r1::torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1 FMT_HEADER_ONLY=1)
# at::parallel_for is inline in ATen's headers (an `omp parallel` region): code that calls it must be
# compiled with -fopenmp, or it silently runs on one thread. It links the wheel's own OpenMP runtime,
# the one libtorch_cpu uses, so that one team of threads serves both.
target_compile_options(r1::torch INTERFACE -fopenmp)
if(EXISTS "${R1_TORCH_DIR}/lib/libgomp.so.1")
  set_property(TARGET r1::torch APPEND PROPERTY INTERFACE_LINK_LIBRARIES "${R1_TORCH_DIR}/lib/libgomp.so.1")
else()
  set_property(TARGET r1::torch APPEND PROPERTY INTERFACE_LINK_OPTIONS -fopenmp)
endif()
# Headers of LibTorch are not ours to warn about.
set_target_properties(r1::torch PROPERTIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES
  "${R1_TORCH_DIR}/include;${R1_TORCH_DIR}/include/torch/csrc/api/include")

# libtorch_cpu.so itself needs libcudart/libcupti from the toolkit (the wheel is a CUDA build).
set(R1_RPATH "${R1_TORCH_DIR}/lib;${R1_TORCH_EXTRA_LIB_DIR};${CUDAToolkit_LIBRARY_DIR}")

set(_cuda_default OFF)
if(CUDAToolkit_FOUND AND EXISTS "${R1_TORCH_DIR}/lib/libtorch_cuda.so")
  set(_cuda_default ON)
endif()
option(R1_CUDA "Compile and link the CUDA/NCCL code paths (needs the CUDA toolkit and a CUDA LibTorch)" ${_cuda_default})
if(R1_CUDA)
  find_package(CUDAToolkit REQUIRED)
  add_library(r1::torch_cuda INTERFACE IMPORTED GLOBAL)
  target_link_libraries(r1::torch_cuda INTERFACE
    "-Wl,--no-as-needed" "${R1_TORCH_DIR}/lib/libtorch_cuda.so" "${R1_TORCH_DIR}/lib/libc10_cuda.so"
    "${R1_TORCH_DIR}/lib/libtorch.so" "-Wl,--as-needed"
    CUDA::cudart r1::torch)
  target_compile_definitions(r1::torch_cuda INTERFACE R1_WITH_CUDA=1 USE_C10D_NCCL=1)
  target_link_directories(r1::torch_cuda INTERFACE "${R1_TORCH_EXTRA_LIB_DIR}")
  # Let the linker resolve libtorch_cuda's own dependencies (cusparseLt, nvshmem, cufile).
  target_link_options(r1::torch_cuda INTERFACE "-Wl,-rpath-link,${R1_TORCH_EXTRA_LIB_DIR}")
endif()
