/* test_gpu_lost.c — fault injection for the CUDA backend: an op handed a
 * bogus device pointer faults on the device (illegal address, a sticky
 * error). The next synchronising call must return RS_ERR_BACKEND rather than
 * exit or hang, the backend must report itself lost, and every later op must
 * fail fast with RS_ERR_BACKEND. Runs in its own process: the CUDA context
 * stays poisoned until the process ends (which is why a server exits).
 * Not run under compute-sanitizer (the fault is the point). Exits 77 without
 * CUDA in the build or without a device. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_util.h"

#ifndef RS_HAVE_CUDA
int main(void) {
    printf("test_gpu_lost: SKIP: this build has no CUDA backend (RS_WITH_CUDA=OFF or no nvcc)\n");
    return 77;
}
#else
int main(void) {
    const int n_dev = test_cuda_devices("test_gpu_lost");
    if (n_dev < 1) return n_dev < 0 ? 1 : 77;
    rs_backend *b = NULL;
    rs_err err = {{0}};
    CHECK_MSG(rs_backend_cuda_create(0, 128, 1024, &b, &err) == RS_OK, "%s", err.msg);
    if (!b) return test_done("test_gpu_lost");
    const int64_t M = 64, N = 64;
    float *g_host = malloc(N * sizeof *g_host), *x_host = calloc((size_t)(M * N), sizeof *x_host);
    for (int64_t i = 0; i < N; i++) g_host[i] = 1.f;
    rs_bweight *g = NULL, *beta = NULL;
    float *x = NULL, *r = NULL;
    CHECK(b->ops->weight_load(b, g_host, N, 1, &g) == RS_OK);
    CHECK(b->ops->weight_load(b, g_host, N, 1, &beta) == RS_OK);
    CHECK(b->ops->alloc(b, (size_t)(M * N) * sizeof(float), (void **)&x) == RS_OK);
    CHECK(b->ops->alloc(b, (size_t)(M * N) * sizeof(float), (void **)&r) == RS_OK);
    CHECK(b->ops->from_host(b, x, x_host, (size_t)(M * N)) == RS_OK);
    CHECK(!b->ops->lost(b));

    /* A healthy op first, then one on an address nothing maps. */
    CHECK(b->ops->add_layernorm(b, x, r, g, beta, 1e-5f, M, N) == RS_OK);
    float *bogus = (float *)(uintptr_t)0x10000; /* never a valid device address */
    rs_status st = b->ops->add_layernorm(b, bogus, r, g, beta, 1e-5f, M, N);
    /* The launch itself may succeed: the fault shows at the next sync. */
    if (st == RS_OK) st = b->ops->to_host(b, x_host, x, (size_t)(M * N));
    CHECK_MSG(st == RS_ERR_BACKEND, "status %d", (int)st);
    CHECK(b->ops->lost(b));
    /* Fails fast from now on, without touching the device. */
    CHECK(b->ops->add_layernorm(b, x, r, g, beta, 1e-5f, M, N) == RS_ERR_BACKEND);
    CHECK(b->ops->to_host(b, x_host, x, 1) == RS_ERR_BACKEND);
    void *p = NULL;
    CHECK(b->ops->alloc(b, 256, &p) == RS_ERR_BACKEND && p == NULL);

    /* Teardown on a lost context must not crash or hang. */
    b->ops->release(b, x);
    b->ops->release(b, r);
    b->ops->weight_free(b, g);
    b->ops->weight_free(b, beta);
    b->ops->destroy(b);
    free(g_host);
    free(x_host);
    return test_done("test_gpu_lost");
}
#endif
