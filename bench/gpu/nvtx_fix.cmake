# Included after project() by bench/gpu/run_checks.sh (CMAKE_PROJECT_INCLUDE). CUDA 12.9+
# ships NVTX 3 only (header-only, CUDA::nvtx3); the CMake files of some PyTorch 2.x
# releases still link CUDA::nvToolsExt. Where that target is missing, stand in for it.
find_package(CUDAToolkit QUIET)
if(TARGET CUDA::nvtx3 AND NOT TARGET CUDA::nvToolsExt)
  add_library(CUDA::nvToolsExt INTERFACE IMPORTED)
  target_link_libraries(CUDA::nvToolsExt INTERFACE CUDA::nvtx3)
endif()
