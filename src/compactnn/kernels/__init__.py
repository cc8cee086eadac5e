"""numba kernels: plain functions on raw arrays with preallocated outputs."""
