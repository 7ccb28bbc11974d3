/* cudasim_control.h — what tests may ask of the CUDA simulation tier (C and
 * C++). Only a build configured with -DRS_CUDA_SIM=ON has these. */
#ifndef RS_CUDASIM_CONTROL_H
#define RS_CUDASIM_CONTROL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Test controls, also set from the environment at first use:
 *   RS_SIM_DEVICES       simulated GPUs (default 2, at most 8)
 *   RS_SIM_DEVICE_MB     memory of each, MiB (default 4096)
 *   RS_SIM_FAIL_ALLOC    the Nth allocation (cudaMalloc, cudaMallocHost,
 *                        counted from 1) fails with cudaErrorMemoryAllocation
 *   RS_SIM_DRIVER_ERROR  every call fails as with a driver older than the
 *                        runtime (cudaErrorInsufficientDriver) */
void rs_sim_set_fail_alloc(long n); /* 0: none */
long rs_sim_alloc_count(void);      /* allocations so far */
int rs_sim_live_allocs(void);       /* device + pinned allocations not freed */


#ifdef __cplusplus
}
#endif

#endif
