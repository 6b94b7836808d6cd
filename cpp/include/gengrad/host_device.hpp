// GENGRAD_HD marks the scalar mathematics that the CUDA kernels (cpp/cuda) share with the CPU
// kernels: one definition of each activation, loss term and layout, compiled by g++ for the CPU
// and by nvcc for both sides. Empty outside nvcc. Only scalar code carries it: the SIMD vector
// types of simd.hpp do not exist in device code.
#pragma once

#if defined(__CUDACC__)
#define GENGRAD_HD __host__ __device__
#else
#define GENGRAD_HD
#endif
