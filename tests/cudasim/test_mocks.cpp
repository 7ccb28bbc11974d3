/* test_mocks.cpp — proves that the simulation tier's mocks (cudart.cpp,
 * cublaslt.cpp, nccl.cpp) and its device emulation (fiber.cpp) check what
 * they claim. Compiled like src/kernels/ (cudasim.h force-included), so the
 * small kernels below are ordinary __global__ functions launched through
 * rs_sim::make_launcher.
 *
 * The cuBLASLt expectations are worked out by hand in the comments from
 * cuBLASLt's documented semantics (column-major, element (r, c) at
 * base[r + c * ld], ld >= rows, op(A) m x k, op(B) k x n, BIAS adds bias[r]
 * to every column, bf16 in and out, fp32 accumulation), not from
 * src/kernels/linear.cu. Every rule violation runs in a fork()ed child whose
 * stderr is read through a pipe: the parent asserts it died of SIGABRT and
 * said the expected phrase.
 *
 * Order matters in two places: the NCCL mock reads RS_SIM_NCCL_FAULT once,
 * at the first ncclAllReduce of the process, so the fault child is forked
 * before the parent's own all-reduce; and a sticky error poisons a device
 * for the whole process, so the illegal-address case runs in a child.
 *
 * Prints one line per case; exits 1 on any failure. */
#include <cublasLt.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <nccl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

int g_failures = 0;
int g_case_failures = 0; /* failures of the running case */

void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    FAIL: ");
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    g_case_failures++;
}

#define CHECK(cond, ...)                                                                                              \
    do {                                                                                                              \
        if (!(cond)) fail(__VA_ARGS__);                                                                               \
    } while (0)
#define CUDA_OK(call)                                                                                                 \
    do {                                                                                                              \
        cudaError_t e_ = (call);                                                                                      \
        if (e_ != cudaSuccess) fail("%s:%d: %s = %s", __FILE__, __LINE__, #call, cudaGetErrorName(e_));               \
    } while (0)

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void run_case(const char *name, const std::function<void()> &body) {
    g_case_failures = 0;
    const double t0 = now_s();
    body();
    const double dt = now_s() - t0;
    printf("%-4s %-66s %7.3f s\n", g_case_failures ? "FAIL" : "ok", name, dt);
    fflush(stdout);
    if (g_case_failures) g_failures++;
}

/* ---- children ---- */

struct Child {
    bool exited = false, signaled = false;
    int code = -1, sig = 0;
    std::string err;
};

/* Runs fn in a fork()ed child with stderr (and the child's stdout) going
 * to a pipe; the child exits 0 when fn returns with no failed CHECK, 1
 * otherwise. */
Child run_child(const std::function<void()> &fn) {
    Child r;
    int fds[2];
    if (pipe(fds) != 0) {
        fail("pipe: %s", strerror(errno));
        return r;
    }
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) {
        fail("fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return r;
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        close(fds[1]);
        g_case_failures = 0;
        fn();
        fflush(stdout);
        fflush(stderr);
        _exit(g_case_failures ? 1 : 0);
    }
    close(fds[1]);
    char buf[4096];
    for (;;) {
        const ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        r.err.append(buf, (size_t)n);
    }
    close(fds[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    r.exited = WIFEXITED(st);
    r.signaled = WIFSIGNALED(st);
    if (r.exited) r.code = WEXITSTATUS(st);
    if (r.signaled) r.sig = WTERMSIG(st);
    return r;
}

void show_child(const Child &c) {
    printf("    child %s %d; its output:\n", c.signaled ? "killed by signal" : "exited with", c.signaled ? c.sig : c.code);
    size_t start = 0;
    while (start < c.err.size()) {
        size_t e = c.err.find('\n', start);
        if (e == std::string::npos) e = c.err.size();
        printf("      | %s\n", c.err.substr(start, e - start).c_str());
        start = e + 1;
    }
}

/* The child must die of SIGABRT having said `phrase` (and, when given,
 * the rule-violation banner). */
void expect_abort(const std::function<void()> &fn, const char *phrase, bool rule_banner = true,
                  const char *phrase2 = nullptr) {
    Child c = run_child(fn);
    bool ok = c.signaled && c.sig == SIGABRT;
    if (!ok) fail("expected the child to die of SIGABRT");
    for (const char *ph : {phrase, phrase2})
        if (ph && c.err.find(ph) == std::string::npos) {
            fail("expected \"%s\" on the child's stderr", ph);
            ok = false;
        }
    if (rule_banner && c.err.find("cudasim: RULE VIOLATION: ") == std::string::npos) {
        fail("expected the \"cudasim: RULE VIOLATION: \" banner");
        ok = false;
    }
    if (!ok) show_child(c);
}

/* The child must exit 0 (its own CHECKs passed, nothing aborted). */
void expect_clean(const std::function<void()> &fn) {
    Child c = run_child(fn);
    if (!(c.exited && c.code == 0)) {
        fail("expected the child to exit 0");
        show_child(c);
    }
}

/* ---- bf16, written from the format (1 sign, 8 exponent, 7 fraction
 * bits: the top half of an IEEE binary32), round to nearest even ---- */

uint16_t bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    const uint32_t lo = u & 0xffffu, hi = u >> 16;
    if (lo > 0x8000u || (lo == 0x8000u && (hi & 1u))) return (uint16_t)(hi + 1);
    return (uint16_t)hi;
}

float fl(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

constexpr uint16_t kNaN = 0x7fc0;      /* bf16 quiet NaN: poisons any product it enters */
constexpr uint16_t kSentinel = 0xbeef; /* a bf16 (-0.466796875) that a correct product never writes */

/* ---- device memory helpers (all through the mock runtime) ---- */

uint16_t *dev_bf16(const std::vector<uint16_t> &h, cudaStream_t s) {
    void *p = nullptr;
    CUDA_OK(cudaMalloc(&p, h.size() * 2));
    CUDA_OK(cudaMemcpyAsync(p, h.data(), h.size() * 2, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaStreamSynchronize(s));
    return static_cast<uint16_t *>(p);
}

std::vector<uint16_t> host_bf16(const uint16_t *d, size_t n, cudaStream_t s) {
    std::vector<uint16_t> h(n, 0);
    CUDA_OK(cudaMemcpyAsync(h.data(), d, n * 2, cudaMemcpyDeviceToHost, s));
    CUDA_OK(cudaStreamSynchronize(s));
    return h;
}

std::vector<uint16_t> bfv(std::initializer_list<float> v) {
    std::vector<uint16_t> r;
    for (float f : v) r.push_back(bf(f));
    return r;
}

/* ================= 1. cuBLASLt ================= */

struct Lt {
    cublasLtHandle_t h = nullptr;
    cudaStream_t s = nullptr;
};

struct Gemm {
    cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
    cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr;
    /* stored layouts: rows, cols, ld */
    uint64_t ar, ac, br, bc, dr, dc;
    int64_t lda, ldb, ldd;
    uint32_t align_a = 0; /* 0: the preference's default */
};

struct Built {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t heur = CUBLAS_STATUS_INTERNAL_ERROR;
    void destroy() {
        if (desc) cublasLtMatmulDescDestroy(desc);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
    }
};

Built build(const Lt &lt, const Gemm &g) {
    Built x;
    memset(&x.res, 0, sizeof x.res);
    CHECK(cublasLtMatmulDescCreate(&x.desc, g.compute, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS, "desc create");
    int32_t ta = g.ta, tb = g.tb;
    uint32_t epi = g.epi;
    CHECK(cublasLtMatmulDescSetAttribute(x.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) == 0, "TRANSA");
    CHECK(cublasLtMatmulDescSetAttribute(x.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) == 0, "TRANSB");
    CHECK(cublasLtMatmulDescSetAttribute(x.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) == 0, "EPILOGUE");
    if (g.bias) {
        int32_t bt = CUDA_R_16BF;
        CHECK(cublasLtMatmulDescSetAttribute(x.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt) == 0, "BT");
        CHECK(cublasLtMatmulDescSetAttribute(x.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof g.bias) == 0,
              "BIAS_POINTER");
    }
    CHECK(cublasLtMatrixLayoutCreate(&x.a, CUDA_R_16BF, g.ar, g.ac, g.lda) == 0, "layout A");
    CHECK(cublasLtMatrixLayoutCreate(&x.b, CUDA_R_16BF, g.br, g.bc, g.ldb) == 0, "layout B");
    CHECK(cublasLtMatrixLayoutCreate(&x.d, CUDA_R_16BF, g.dr, g.dc, g.ldd) == 0, "layout D");
    CHECK(cublasLtMatmulPreferenceCreate(&x.pref) == 0, "pref");
    uint64_t ws = 0;
    CHECK(cublasLtMatmulPreferenceSetAttribute(x.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws) == 0,
          "pref ws");
    if (g.align_a)
        CHECK(cublasLtMatmulPreferenceSetAttribute(x.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &g.align_a,
                                                   sizeof g.align_a) == 0,
              "pref align A");
    x.heur = cublasLtMatmulAlgoGetHeuristic(lt.h, x.desc, x.a, x.b, x.d, x.d, x.pref, 1, &x.res, &x.found);
    return x;
}

/* D = 1 * op(A) op(B) + 0 * D (+ epilogue) with the heuristic's algorithm. */
cublasStatus_t matmul(const Lt &lt, Built &x, const void *A, const void *B, void *D) {
    const float one = 1.f, zero = 0.f;
    return cublasLtMatmul(lt.h, x.desc, &one, A, x.a, B, x.b, &zero, D, x.d, D, x.d, &x.res.algo, nullptr, 0, lt.s);
}

/* Runs g on A, B into a D of `d_elems` elements preset to kSentinel;
 * returns D as copied back. */
std::vector<uint16_t> run_gemm(const Lt &lt, const Gemm &g, const std::vector<uint16_t> &a,
                               const std::vector<uint16_t> &b, size_t d_elems) {
    uint16_t *dA = dev_bf16(a, lt.s), *dB = dev_bf16(b, lt.s);
    uint16_t *dD = dev_bf16(std::vector<uint16_t>(d_elems, kSentinel), lt.s);
    Built x = build(lt, g);
    std::vector<uint16_t> out;
    if (x.heur != CUBLAS_STATUS_SUCCESS || x.found != 1) {
        fail("heuristic: status %d, found %d", (int)x.heur, x.found);
    } else {
        const cublasStatus_t st = matmul(lt, x, dA, dB, dD);
        CHECK(st == CUBLAS_STATUS_SUCCESS, "cublasLtMatmul: %s", cublasLtGetStatusName(st));
        CUDA_OK(cudaStreamSynchronize(lt.s));
        out = host_bf16(dD, d_elems, lt.s);
    }
    x.destroy();
    CUDA_OK(cudaFree(dA));
    CUDA_OK(cudaFree(dB));
    CUDA_OK(cudaFree(dD));
    return out;
}

void expect_d(const std::vector<uint16_t> &got, const std::vector<float> &want) {
    if (got.size() != want.size()) {
        fail("D has %zu elements, expected %zu", got.size(), want.size());
        return;
    }
    for (size_t i = 0; i < want.size(); i++) {
        const bool is_sent = std::isnan(want[i]); /* NAN in `want` marks padding that must keep kSentinel */
        const uint16_t w = is_sent ? kSentinel : bf(want[i]);
        CHECK(got[i] == w, "D[%zu] = 0x%04x (%g), expected 0x%04x (%s %g)", i, got[i], (double)fl(got[i]), w,
              is_sent ? "untouched padding" : "value", (double)fl(w));
    }
}

/* A (2 x 3) = [1 2 3; 4 5 6], B (3 x 2) = [7 8; 9 10; 11 12].
 * A B = [1*7+2*9+3*11  1*8+2*10+3*12; 4*7+5*9+6*11  4*8+5*10+6*12]
 *     = [7+18+33  8+20+36; 28+45+66  32+50+72] = [58 64; 139 154],
 * all exact in bf16 (at most 8 significant bits: 139 = 10001011b,
 * 154 = 10011010b). */
void lt_nn(const Lt &lt) {
    /* A column-major, lda 2: columns (1,4) (2,5) (3,6); B ldb 3: (7,9,11) (8,10,12).
     * D with ldd 4 (padded): element (r, c) at r + 4c, so D[0..1] = column 0,
     * D[4..5] = column 1, and D[2], D[3], D[6], D[7] are padding that keeps
     * its sentinel. */
    Gemm g;
    g.ar = 2, g.ac = 3, g.lda = 2;
    g.br = 3, g.bc = 2, g.ldb = 3;
    g.dr = 2, g.dc = 2, g.ldd = 4;
    auto d = run_gemm(lt, g, bfv({1, 4, 2, 5, 3, 6}), bfv({7, 9, 11, 8, 10, 12}), 8);
    expect_d(d, {58, 139, NAN, NAN, 64, 154, NAN, NAN});
}

void lt_transa(const Lt &lt) {
    /* TRANSA = T: A is stored k x m = 3 x 2 (the transpose of op(A) =
     * [1 2 3; 4 5 6]), stored [1 4; 2 5; 3 6] with lda 4 > 3 rows: columns
     * (1,2,3,pad) (4,5,6,pad), the padding a NaN that must not be read.
     * Same product: D = [58 64; 139 154], ldd 2. */
    Gemm g;
    g.ta = CUBLAS_OP_T;
    g.ar = 3, g.ac = 2, g.lda = 4;
    g.br = 3, g.bc = 2, g.ldb = 3;
    g.dr = 2, g.dc = 2, g.ldd = 2;
    std::vector<uint16_t> a = bfv({1, 2, 3, 0, 4, 5, 6, 0});
    a[3] = a[7] = kNaN;
    auto d = run_gemm(lt, g, a, bfv({7, 9, 11, 8, 10, 12}), 4);
    expect_d(d, {58, 139, 64, 154});
}

void lt_transb(const Lt &lt) {
    /* TRANSB = T: B stored n x k = 2 x 3, the transpose of op(B) =
     * [7 8; 9 10; 11 12], i.e. [7 9 11; 8 10 12], ldb 3 (padded, NaN at
     * rows 2): columns (7,8,pad) (9,10,pad) (11,12,pad). */
    Gemm g;
    g.tb = CUBLAS_OP_T;
    g.ar = 2, g.ac = 3, g.lda = 2;
    g.br = 2, g.bc = 3, g.ldb = 3;
    g.dr = 2, g.dc = 2, g.ldd = 2;
    std::vector<uint16_t> b = bfv({7, 8, 0, 9, 10, 0, 11, 12, 0});
    b[2] = b[5] = b[8] = kNaN;
    auto d = run_gemm(lt, g, bfv({1, 4, 2, 5, 3, 6}), b, 4);
    expect_d(d, {58, 139, 64, 154});
}

void lt_bias(const Lt &lt) {
    /* BIAS epilogue, bias = (0.5, -100) by row: D = [58+0.5 64+0.5; 139-100 154-100]
     * = [58.5 64.5; 39 54] (58.5 = 111010.1b, 64.5 = 1000000.1b: exact in
     * bf16). A bias by column would give [58.5 -36; 139.5 54]. */
    void *bias = nullptr;
    CUDA_OK(cudaMalloc(&bias, 4));
    std::vector<uint16_t> hb = bfv({0.5f, -100.f});
    CUDA_OK(cudaMemcpyAsync(bias, hb.data(), 4, cudaMemcpyHostToDevice, lt.s));
    CUDA_OK(cudaStreamSynchronize(lt.s));
    Gemm g;
    g.epi = CUBLASLT_EPILOGUE_BIAS;
    g.bias = bias;
    g.ar = 2, g.ac = 3, g.lda = 2;
    g.br = 3, g.bc = 2, g.ldb = 3;
    g.dr = 2, g.dc = 2, g.ldd = 2;
    auto d = run_gemm(lt, g, bfv({1, 4, 2, 5, 3, 6}), bfv({7, 9, 11, 8, 10, 12}), 4);
    expect_d(d, {58.5f, 39, 64.5f, 54});
    CUDA_OK(cudaFree(bias));
}

void lt_fp32_accumulation(const Lt &lt) {
    /* m = n = 1, k = 5: A = [1 2^-9 2^-9 2^-9 2^-9], B = [1 1 1 1 1]^T.
     * In fp32: 1 + 4 * 2^-9 = 1 + 2^-7 = 1.0078125, exact in bf16 (0x3f81).
     * Rounded to bf16 at every step: 1 + 2^-9 is a quarter of bf16's ulp at 1
     * (2^-7) and rounds back to 1, four times: 1.0 (0x3f80). */
    const float e = ldexpf(1.f, -9);
    Gemm g;
    g.ar = 1, g.ac = 5, g.lda = 1;
    g.br = 5, g.bc = 1, g.ldb = 5;
    g.dr = 1, g.dc = 1, g.ldd = 1;
    auto d = run_gemm(lt, g, bfv({1, e, e, e, e}), bfv({1, 1, 1, 1, 1}), 1);
    CHECK(d.size() == 1 && d[0] == 0x3f81, "D = 0x%04x (%g), expected 0x3f81 (1.0078125, fp32 accumulation)",
          d.empty() ? 0 : d[0], d.empty() ? 0.0 : (double)fl(d[0]));
}

void lt_refusals(const Lt &lt) {
    Gemm base;
    base.ar = 2, base.ac = 3, base.lda = 2;
    base.br = 3, base.bc = 2, base.ldb = 3;
    base.dr = 2, base.dc = 2, base.ldd = 2;
    {
        /* Compute type: 32F_FAST_16BF keeps the 32F scale type, only the compute type differs. */
        Gemm g = base;
        g.compute = CUBLAS_COMPUTE_32F_FAST_16BF;
        Built x = build(lt, g);
        CHECK(x.heur == CUBLAS_STATUS_NOT_SUPPORTED, "compute 32F_FAST_16BF: heuristic %s, expected NOT_SUPPORTED",
              cublasLtGetStatusName(x.heur));
        x.destroy();
    }
    for (cublasLtEpilogue_t epi : {CUBLASLT_EPILOGUE_RELU, CUBLASLT_EPILOGUE_GELU, CUBLASLT_EPILOGUE_RELU_BIAS}) {
        Gemm g = base;
        g.epi = epi;
        Built x = build(lt, g);
        CHECK(x.heur == CUBLAS_STATUS_NOT_SUPPORTED, "epilogue %d: heuristic %s, expected NOT_SUPPORTED", (int)epi,
              cublasLtGetStatusName(x.heur));
        x.destroy();
    }
    {
        /* ld < rows: a 3 x 2 layout with ld 2; ld == rows is fine. */
        cublasLtMatrixLayout_t l = nullptr;
        cublasStatus_t st = cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, 3, 2, 2);
        CHECK(st == CUBLAS_STATUS_INVALID_VALUE, "layout 3x2 ld 2: %s, expected INVALID_VALUE",
              cublasLtGetStatusName(st));
        if (st == CUBLAS_STATUS_SUCCESS) cublasLtMatrixLayoutDestroy(l);
        st = cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, 3, 2, 3);
        CHECK(st == CUBLAS_STATUS_SUCCESS, "layout 3x2 ld 3: %s", cublasLtGetStatusName(st));
        if (st == CUBLAS_STATUS_SUCCESS) cublasLtMatrixLayoutDestroy(l);
    }
    {
        /* op(A) 2 x 3 against a B of 4 x 2: k differs. */
        Gemm g = base;
        g.br = 4, g.ldb = 4;
        Built x = build(lt, g);
        CHECK(x.heur == CUBLAS_STATUS_INVALID_VALUE, "A 2x3, B 4x2: heuristic %s, expected INVALID_VALUE",
              cublasLtGetStatusName(x.heur));
        x.destroy();
        /* D of 3 x 2 for a 2 x 2 product. */
        g = base;
        g.dr = 3, g.ldd = 3;
        x = build(lt, g);
        CHECK(x.heur == CUBLAS_STATUS_INVALID_VALUE, "D 3x2 for 2x2: heuristic %s, expected INVALID_VALUE",
              cublasLtGetStatusName(x.heur));
        x.destroy();
        /* Without TRANSA a stored 3 x 2 A is op(A) 3 x 2, which does not fit B 3 x 2. */
        g = base;
        g.ar = 3, g.ac = 2, g.lda = 3;
        x = build(lt, g);
        CHECK(x.heur == CUBLAS_STATUS_INVALID_VALUE, "A 3x2 untransposed: heuristic %s, expected INVALID_VALUE",
              cublasLtGetStatusName(x.heur));
        x.destroy();
    }
    /* Operands for the refusals at cublasLtMatmul. A's data also at byte
     * offset 16 (element 8): 16-byte aligned, not 32. */
    std::vector<uint16_t> ha(16, kNaN);
    const float av[6] = {1, 4, 2, 5, 3, 6};
    for (int i = 0; i < 6; i++) ha[(size_t)i] = ha[(size_t)(8 + i)] = bf(av[i]);
    uint16_t *dA = dev_bf16(ha, lt.s), *dB = dev_bf16(bfv({7, 9, 11, 8, 10, 12, 13, 14, 15}), lt.s);
    uint16_t *dD = dev_bf16(std::vector<uint16_t>(6, kSentinel), lt.s);
    {
        /* Default preference (256-byte minimum alignment): A at +16 refused. */
        Built x = build(lt, base);
        cublasStatus_t st = matmul(lt, x, dA + 8, dB, dD);
        CHECK(st == CUBLAS_STATUS_INVALID_VALUE, "A 16-byte aligned under a 256-byte preference: %s, expected "
              "INVALID_VALUE", cublasLtGetStatusName(st));
        x.destroy();
        /* A preference of 16 bytes for A: the same pointer is accepted and read. */
        Gemm g = base;
        g.align_a = 16;
        x = build(lt, g);
        st = matmul(lt, x, dA + 8, dB, dD);
        CHECK(st == CUBLAS_STATUS_SUCCESS, "A 16-byte aligned under a 16-byte preference: %s",
              cublasLtGetStatusName(st));
        CUDA_OK(cudaStreamSynchronize(lt.s));
        expect_d(host_bf16(dD, 4, lt.s), {58, 139, 64, 154});
        /* ... but not at +2 (2-byte aligned). */
        st = matmul(lt, x, dA + 1, dB, dD);
        CHECK(st == CUBLAS_STATUS_INVALID_VALUE, "A 2-byte aligned under a 16-byte preference: %s, expected "
              "INVALID_VALUE", cublasLtGetStatusName(st));
        x.destroy();
    }
    {
        /* Algorithm chosen for n = 2: n = 3 refused; n = 1 (the tier's model:
         * at most the chosen n) accepted, giving column 0 = (58, 139). */
        Built x = build(lt, base);
        cublasLtMatrixLayout_t b3, d3, b1, d1;
        CHECK(cublasLtMatrixLayoutCreate(&b3, CUDA_R_16BF, 3, 3, 3) == 0, "b3");
        CHECK(cublasLtMatrixLayoutCreate(&d3, CUDA_R_16BF, 2, 3, 2) == 0, "d3");
        CHECK(cublasLtMatrixLayoutCreate(&b1, CUDA_R_16BF, 3, 1, 3) == 0, "b1");
        CHECK(cublasLtMatrixLayoutCreate(&d1, CUDA_R_16BF, 2, 1, 2) == 0, "d1");
        const float one = 1.f, zero = 0.f;
        cublasStatus_t st = cublasLtMatmul(lt.h, x.desc, &one, dA, x.a, dB, b3, &zero, dD, d3, dD, d3, &x.res.algo,
                                           nullptr, 0, lt.s);
        CHECK(st == CUBLAS_STATUS_NOT_SUPPORTED, "n = 3 with an algorithm for n = 2: %s, expected NOT_SUPPORTED",
              cublasLtGetStatusName(st));
        CUDA_OK(cudaMemcpyAsync(dD, std::vector<uint16_t>(6, kSentinel).data(), 12, cudaMemcpyHostToDevice, lt.s));
        st = cublasLtMatmul(lt.h, x.desc, &one, dA, x.a, dB, b1, &zero, dD, d1, dD, d1, &x.res.algo, nullptr, 0, lt.s);
        CHECK(st == CUBLAS_STATUS_SUCCESS, "n = 1 with an algorithm for n = 2: %s", cublasLtGetStatusName(st));
        CUDA_OK(cudaStreamSynchronize(lt.s));
        expect_d(host_bf16(dD, 4, lt.s), {58, 139, NAN, NAN});
        for (auto l : {b3, d3, b1, d1}) cublasLtMatrixLayoutDestroy(l);
        x.destroy();
    }
    CUDA_OK(cudaFree(dA));
    CUDA_OK(cudaFree(dB));
    CUDA_OK(cudaFree(dD));
}

/* ================= 2. runtime rules ================= */

/* fill: 1..n as bytes */
std::vector<unsigned char> pattern(size_t n, unsigned char seed) {
    std::vector<unsigned char> v(n);
    for (size_t i = 0; i < n; i++) v[i] = (unsigned char)(seed + i * 7);
    return v;
}

/* H2D on s1, then D2D from it on s2, with or without an event between. */
void cross_stream(bool with_event) {
    const size_t n = 4096;
    cudaStream_t s1, s2;
    CUDA_OK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    CUDA_OK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    void *a = nullptr, *b = nullptr;
    CUDA_OK(cudaMalloc(&a, n));
    CUDA_OK(cudaMalloc(&b, n));
    std::vector<unsigned char> h = pattern(n, 3), back(n, 0);
    CUDA_OK(cudaMemcpyAsync(a, h.data(), n, cudaMemcpyHostToDevice, s1));
    cudaEvent_t ev = nullptr;
    if (with_event) {
        CUDA_OK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
        CUDA_OK(cudaEventRecord(ev, s1));
        CUDA_OK(cudaStreamWaitEvent(s2, ev, 0));
    }
    CUDA_OK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s2)); /* the race without the event */
    CUDA_OK(cudaStreamSynchronize(s2));
    CUDA_OK(cudaMemcpyAsync(back.data(), b, n, cudaMemcpyDeviceToHost, s2));
    CUDA_OK(cudaStreamSynchronize(s2));
    CHECK(back == h, "device->device copy after the event wait: wrong bytes");
    if (ev) CUDA_OK(cudaEventDestroy(ev));
    CUDA_OK(cudaFree(a));
    CUDA_OK(cudaFree(b));
    CUDA_OK(cudaStreamDestroy(s1));
    CUDA_OK(cudaStreamDestroy(s2));
}

/* cudaMemcpy host->device (legacy stream), then a read on a non-blocking
 * stream. From pageable memory cudaMemcpy returns once the source is
 * staged, before the DMA: the non-blocking stream is not ordered after it.
 * From pinned memory it returns after the copy. */
void legacy_then_nonblocking(bool pinned_src) {
    const size_t n = 1024;
    cudaStream_t s;
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    void *a = nullptr, *b = nullptr, *hp = nullptr;
    CUDA_OK(cudaMalloc(&a, n));
    CUDA_OK(cudaMalloc(&b, n));
    std::vector<unsigned char> h = pattern(n, 11), back(n, 0);
    const void *src = h.data();
    if (pinned_src) {
        CUDA_OK(cudaMallocHost(&hp, n));
        memcpy(hp, h.data(), n);
        src = hp;
    }
    CUDA_OK(cudaMemcpy(a, src, n, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s)); /* the race from pageable memory */
    CUDA_OK(cudaStreamSynchronize(s));
    CUDA_OK(cudaMemcpyAsync(back.data(), b, n, cudaMemcpyDeviceToHost, s));
    CHECK(back == h, "the non-blocking stream read wrong bytes");
    if (hp) CUDA_OK(cudaFreeHost(hp));
    CUDA_OK(cudaFree(a));
    CUDA_OK(cudaFree(b));
    CUDA_OK(cudaStreamDestroy(s));
}

/* A pinned staging buffer written while a copy from it is queued. */
void pinned_reuse(bool wait_first) {
    const size_t n = 2048;
    cudaStream_t s;
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    void *d = nullptr, *hp = nullptr;
    CUDA_OK(cudaMalloc(&d, n));
    CUDA_OK(cudaMallocHost(&hp, n));
    std::vector<unsigned char> h = pattern(n, 5), back(n, 0);
    memcpy(hp, h.data(), n);
    CUDA_OK(cudaMemcpyAsync(d, hp, n, cudaMemcpyHostToDevice, s));
    if (wait_first) CUDA_OK(cudaStreamSynchronize(s));
    static_cast<unsigned char *>(hp)[n / 2] ^= 0x5a; /* the next batch staged */
    CUDA_OK(cudaStreamSynchronize(s));
    CUDA_OK(cudaMemcpyAsync(back.data(), d, n, cudaMemcpyDeviceToHost, s));
    CHECK(back == h, "the device holds other bytes than the buffer held at the copy");
    CUDA_OK(cudaFreeHost(hp));
    CUDA_OK(cudaFree(d));
    CUDA_OK(cudaStreamDestroy(s));
}

void free_on_other_device() {
    void *p = nullptr;
    CUDA_OK(cudaSetDevice(0));
    CUDA_OK(cudaMalloc(&p, 256));
    CUDA_OK(cudaSetDevice(1));
    CUDA_OK(cudaFree(p)); /* the violation */
}

void copy_from_freed() {
    void *p = nullptr;
    CUDA_OK(cudaMalloc(&p, 512));
    CUDA_OK(cudaFree(p));
    std::vector<unsigned char> h(512);
    CUDA_OK(cudaMemcpy(h.data(), p, 512, cudaMemcpyDeviceToHost)); /* the violation */
}

__global__ void k_fill(float *p, float v) { p[blockIdx.x * blockDim.x + threadIdx.x] = v; }

void kernel_on_freed() {
    void *p = nullptr;
    CUDA_OK(cudaMalloc(&p, 32 * sizeof(float)));
    CUDA_OK(cudaFree(p));
    rs_sim::make_launcher(&k_fill, "k_fill", dim3(1), dim3(32), 0, nullptr)(static_cast<float *>(p), 1.f);
}

void deferred_d2h() {
    const size_t n = 256;
    cudaStream_t s;
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    void *d = nullptr, *hp = nullptr;
    CUDA_OK(cudaMalloc(&d, n));
    CUDA_OK(cudaMallocHost(&hp, n));
    std::vector<unsigned char> h = pattern(n, 9);
    CUDA_OK(cudaMemcpyAsync(d, h.data(), n, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaStreamSynchronize(s));
    memset(hp, 0, n);
    CUDA_OK(cudaMemcpyAsync(hp, d, n, cudaMemcpyDeviceToHost, s));
    std::vector<unsigned char> z(n, 0);
    CHECK(memcmp(hp, z.data(), n) == 0, "the pinned destination changed before the stream was synchronised");
    CUDA_OK(cudaStreamSynchronize(s));
    CHECK(memcmp(hp, h.data(), n) == 0, "the pinned destination does not hold the bytes after the sync");
    CUDA_OK(cudaFreeHost(hp));
    CUDA_OK(cudaFree(d));
    CUDA_OK(cudaStreamDestroy(s));
}

float g_not_device[32]; /* host memory: an illegal address for a kernel */

void sticky_illegal_address() {
    cudaStream_t s;
    CUDA_OK(cudaSetDevice(0));
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    void *ok_mem = nullptr;
    CUDA_OK(cudaMalloc(&ok_mem, 128));
    rs_sim::make_launcher(&k_fill, "k_fill", dim3(1), dim3(32), 0, s)(g_not_device, 1.f);
    cudaError_t e = cudaGetLastError();
    CHECK(e == cudaSuccess, "the launch itself reported %s (the fault is asynchronous)", cudaGetErrorName(e));
    e = cudaStreamSynchronize(s);
    CHECK(e == cudaErrorIllegalAddress, "first sync: %s, expected cudaErrorIllegalAddress", cudaGetErrorName(e));
    CHECK(g_not_device[0] == 0.f, "the faulting kernel wrote host memory");
    e = cudaStreamSynchronize(s);
    CHECK(e == cudaErrorIllegalAddress, "second sync: %s, expected the sticky error", cudaGetErrorName(e));
    void *p = nullptr;
    e = cudaMalloc(&p, 64);
    CHECK(e == cudaErrorIllegalAddress, "cudaMalloc after the fault: %s", cudaGetErrorName(e));
    unsigned char h[128];
    e = cudaMemcpy(h, ok_mem, 128, cudaMemcpyDeviceToHost);
    CHECK(e == cudaErrorIllegalAddress, "cudaMemcpy after the fault: %s", cudaGetErrorName(e));
    e = cudaDeviceSynchronize();
    CHECK(e == cudaErrorIllegalAddress, "cudaDeviceSynchronize after the fault: %s", cudaGetErrorName(e));
    for (int i = 0; i < 2; i++) {
        e = cudaGetLastError();
        CHECK(e == cudaErrorIllegalAddress, "cudaGetLastError #%d: %s (sticky: not cleared)", i, cudaGetErrorName(e));
    }
    /* The other device's context is not lost. */
    CUDA_OK(cudaSetDevice(1));
    e = cudaMalloc(&p, 64);
    CHECK(e == cudaSuccess, "cudaMalloc on device 1 after device 0's fault: %s", cudaGetErrorName(e));
    if (e == cudaSuccess) CUDA_OK(cudaFree(p));
}

void fail_alloc() {
    (void)cudaGetLastError();
    const int live = rs_sim_live_allocs();
    rs_sim_set_fail_alloc(1);
    void *p = reinterpret_cast<void *>(0x1);
    cudaError_t e = cudaMalloc(&p, 1024);
    CHECK(e == cudaErrorMemoryAllocation, "injected failure: %s", cudaGetErrorName(e));
    CHECK(p == nullptr, "a failed cudaMalloc left %p", p);
    CHECK(rs_sim_live_allocs() == live, "a failed cudaMalloc changed the live allocations");
    e = cudaGetLastError();
    CHECK(e == cudaErrorMemoryAllocation, "cudaGetLastError: %s", cudaGetErrorName(e));
    e = cudaGetLastError();
    CHECK(e == cudaSuccess, "cudaGetLastError again: %s (an allocation failure is not sticky)", cudaGetErrorName(e));
    e = cudaMalloc(&p, 1024);
    CHECK(e == cudaSuccess, "the next cudaMalloc: %s", cudaGetErrorName(e));
    if (e == cudaSuccess) CUDA_OK(cudaFree(p));
    /* The N-th counts from the call: the second allocation from now fails. */
    rs_sim_set_fail_alloc(2);
    void *q = nullptr, *r = nullptr;
    CUDA_OK(cudaMallocHost(&q, 64));
    e = cudaMalloc(&r, 64);
    CHECK(e == cudaErrorMemoryAllocation, "second allocation after set_fail_alloc(2): %s", cudaGetErrorName(e));
    if (q) CUDA_OK(cudaFreeHost(q));
    if (e == cudaSuccess) CUDA_OK(cudaFree(r));
    (void)cudaGetLastError();
    rs_sim_set_fail_alloc(0);
}

/* ================= 3. fibers ================= */

constexpr int kThreads = 256;

__global__ void k_block_sum(const float *in, float *out) {
    __shared__ float part[kThreads / 32];
    const int t = (int)threadIdx.x, lane = t & 31, warp = t >> 5;
    float v = in[blockIdx.x * blockDim.x + threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < kThreads / 32 ? part[lane] : 0.f;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) out[blockIdx.x] = v;
    }
}

void block_sum() {
    const int blocks = 3, n = blocks * kThreads;
    cudaStream_t s;
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    std::vector<float> h((size_t)n);
    double want[blocks] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        h[(size_t)i] = (float)((i * 37) % 101) - 50.f; /* integers: every partial sum exact in fp32 */
        want[i / kThreads] += h[(size_t)i];
    }
    void *din = nullptr, *dout = nullptr;
    CUDA_OK(cudaMalloc(&din, (size_t)n * 4));
    CUDA_OK(cudaMalloc(&dout, blocks * 4));
    CUDA_OK(cudaMemcpyAsync(din, h.data(), (size_t)n * 4, cudaMemcpyHostToDevice, s));
    rs_sim::make_launcher(&k_block_sum, "k_block_sum", dim3(blocks), dim3(kThreads), 0, s)(
        static_cast<const float *>(din), static_cast<float *>(dout));
    CUDA_OK(cudaGetLastError());
    float got[blocks];
    CUDA_OK(cudaMemcpyAsync(got, dout, sizeof got, cudaMemcpyDeviceToHost, s));
    CUDA_OK(cudaStreamSynchronize(s));
    for (int b = 0; b < blocks; b++)
        CHECK((double)got[b] == want[b], "block %d: sum %g, expected %g", b, (double)got[b], want[b]);
    CUDA_OK(cudaFree(din));
    CUDA_OK(cudaFree(dout));
    CUDA_OK(cudaStreamDestroy(s));
}

/* Lanes 0..15 wait at __syncthreads while 16..31 wait at a full-mask
 * shuffle that needs lanes 0..15: neither barrier can complete. */
__global__ void k_divergent(float *out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16)
        __syncthreads();
    else
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}

/* Lanes 0..15 exit; 16..31 then shuffle with the full mask. */
__global__ void k_shfl_after_exit(float *out) {
    if (threadIdx.x < 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
}

/* Lanes 16..31 exit after 0..15 entered the shuffle (fibers run in lane
 * order): the shuffle can never complete either. */
__global__ void k_shfl_before_exit(float *out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
}

void launch_warp_kernel(void (*k)(float *), const char *name) {
    cudaStream_t s;
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    void *d = nullptr;
    CUDA_OK(cudaMalloc(&d, 32 * 4));
    rs_sim::make_launcher(k, name, dim3(1), dim3(32), 0, s)(static_cast<float *>(d));
    CUDA_OK(cudaStreamSynchronize(s)); /* runs (and aborts) here */
}

/* ================= 4. NCCL ================= */

/* Rank r's buffer of n bf16 on its device and its stream (device r current). */
struct Rank {
    cudaStream_t s = nullptr;
    uint16_t *buf = nullptr;
};

Rank make_rank(int r, const std::vector<uint16_t> &h) {
    Rank k;
    CUDA_OK(cudaSetDevice(r));
    CUDA_OK(cudaStreamCreateWithFlags(&k.s, cudaStreamNonBlocking));
    k.buf = dev_bf16(h, k.s);
    return k;
}

void nccl_mismatch() {
    ncclComm_t comms[2];
    CHECK(ncclCommInitAll(comms, 2, nullptr) == ncclSuccess, "ncclCommInitAll");
    Rank r0 = make_rank(0, std::vector<uint16_t>(64, bf(1.f)));
    CHECK(ncclAllReduce(r0.buf, r0.buf, 64, ncclBfloat16, ncclSum, comms[0], r0.s) == ncclSuccess, "rank 0");
    Rank r1 = make_rank(1, std::vector<uint16_t>(64, bf(2.f)));
    CHECK(ncclAllReduce(r1.buf, r1.buf, 63, ncclBfloat16, ncclSum, comms[1], r1.s) == ncclSuccess, "rank 1");
    CUDA_OK(cudaStreamSynchronize(r1.s)); /* both arrive: the reduction sees the counts */
}

void nccl_hang() {
    setenv("RS_SIM_NCCL_FAULT", "hang:1:0", 1); /* before the process's first ncclAllReduce */
    ncclComm_t comms[2];
    CHECK(ncclCommInitAll(comms, 2, nullptr) == ncclSuccess, "ncclCommInitAll");
    const uint16_t one = bf(1.f);
    Rank r1 = make_rank(1, std::vector<uint16_t>(32, bf(2.f)));
    CHECK(ncclAllReduce(r1.buf, r1.buf, 32, ncclBfloat16, ncclSum, comms[1], r1.s) == ncclSuccess, "rank 1");
    Rank r0 = make_rank(0, std::vector<uint16_t>(32, one));
    CHECK(ncclAllReduce(r0.buf, r0.buf, 32, ncclBfloat16, ncclSum, comms[0], r0.s) == ncclSuccess, "rank 0");
    for (int i = 0; i < 5; i++) {
        cudaError_t e = cudaStreamQuery(r0.s);
        CHECK(e == cudaErrorNotReady, "rank 0's query #%d: %s, expected cudaErrorNotReady", i, cudaGetErrorName(e));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ncclResult_t ae = ncclInternalError;
    CHECK(ncclCommGetAsyncError(comms[0], &ae) == ncclSuccess && ae == ncclSuccess,
          "rank 0 reported an asynchronous error (%d) before the abort: a hang is not an error", (int)ae);
    CHECK(ncclCommAbort(comms[0]) == ncclSuccess, "ncclCommAbort(rank 0)");
    cudaError_t e = cudaStreamQuery(r0.s);
    CHECK(e == cudaSuccess, "rank 0's stream after the abort: %s", cudaGetErrorName(e));
    CUDA_OK(cudaStreamSynchronize(r0.s));
    ae = ncclSuccess;
    /* As the brief of this case asks; note that the real ncclCommAbort
     * frees the communicator (routescore does not call this after it). */
    CHECK(ncclCommGetAsyncError(comms[0], &ae) == ncclSuccess && ae != ncclSuccess,
          "rank 0's asynchronous error after the abort: %d, expected an error", (int)ae);
    std::vector<uint16_t> b0 = host_bf16(r0.buf, 32, r0.s);
    CHECK(b0 == std::vector<uint16_t>(32, one), "rank 0's aborted all-reduce changed its buffer");
    /* Rank 1 (the one that never arrived) ends with its own abort. */
    CUDA_OK(cudaSetDevice(1));
    CHECK(ncclCommAbort(comms[1]) == ncclSuccess, "ncclCommAbort(rank 1)");
    e = cudaStreamQuery(r1.s);
    CHECK(e == cudaSuccess, "rank 1's stream after its abort: %s", cudaGetErrorName(e));
}

/* The mock's ncclCommDestroy marks a communicator destroyed but keeps it
 * (so that later use is caught); held here it stays reachable for
 * LeakSanitizer. */
ncclComm_t g_comms[2];

void nccl_allreduce() {
    ncclComm_t *comms = g_comms;
    CHECK(ncclCommInitAll(comms, 2, nullptr) == ncclSuccess, "ncclCommInitAll");
    /* Elements chosen by hand to exercise bf16 rounding of the one add
     * (ulp of bf16 in [1, 2) is 2^-7 = 0.0078125, in [2, 4) 2^-6):
     *   1 + 2^-8          = 1.00390625: a tie, to even -> 1.0
     *   1 + 3 * 2^-9      = 1.005859375: above the half ulp -> 1.0078125
     *   (1 + 2^-7) + 2^-8 = 1.01171875: a tie, to even -> 1.015625
     *   1.5 + 0.75        = 2.25 exact
     *   3 + (-1.25)       = 1.75 exact
     *   -2 + 2            = 0
     * then 58 more pairs (a_i, b_i) checked against bf(fl(a)+fl(b)). */
    const float e7 = ldexpf(1.f, -7), e8 = ldexpf(1.f, -8), e9 = ldexpf(1.f, -9);
    std::vector<float> av = {1, 1, 1 + e7, 1.5f, 3, -2}, bv = {e8, 3 * e9, e8, 0.75f, -1.25f, 2};
    std::vector<float> hand = {1, 1 + e7, 1 + 2 * e7, 2.25f, 1.75f, 0};
    const size_t N = 64;
    for (size_t i = av.size(); i < N; i++) {
        av.push_back((float)i * 0.37f - 9.f);
        bv.push_back(1.f / (float)(i + 1));
    }
    std::vector<uint16_t> a(N), b(N), want(N);
    for (size_t i = 0; i < N; i++) {
        a[i] = bf(av[i]);
        b[i] = bf(bv[i]);
        want[i] = i < hand.size() ? bf(hand[i]) : bf(fl(a[i]) + fl(b[i]));
    }
    std::vector<uint16_t> got[2];
    auto rank = [&](int r) {
        Rank k = make_rank(r, r == 0 ? a : b);
        ncclResult_t nr = ncclAllReduce(k.buf, k.buf, N, ncclBfloat16, ncclSum, comms[r], k.s);
        CHECK(nr == ncclSuccess, "rank %d: ncclAllReduce %s", r, ncclGetErrorString(nr));
        CUDA_OK(cudaStreamSynchronize(k.s));
        got[r] = host_bf16(k.buf, N, k.s);
        CUDA_OK(cudaFree(k.buf));
        CUDA_OK(cudaStreamDestroy(k.s));
    };
    std::thread t0(rank, 0), t1(rank, 1);
    t0.join();
    t1.join();
    for (int r = 0; r < 2; r++) {
        if (got[r].size() != N) {
            fail("rank %d: no result", r);
            continue;
        }
        for (size_t i = 0; i < N; i++)
            CHECK(got[r][i] == want[i], "rank %d [%zu]: 0x%04x (%g), expected 0x%04x (%g)", r, i, got[r][i],
                  (double)fl(got[r][i]), want[i], (double)fl(want[i]));
    }
    for (int r = 0; r < 2; r++) {
        ncclResult_t ae = ncclInternalError;
        CHECK(ncclCommGetAsyncError(comms[r], &ae) == ncclSuccess && ae == ncclSuccess, "rank %d async error %d", r,
              (int)ae);
        CHECK(ncclCommDestroy(comms[r]) == ncclSuccess, "ncclCommDestroy(%d)", r);
    }
    CUDA_OK(cudaSetDevice(0));
}

} // namespace

int main() {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 2) {
        printf("test_mocks needs at least 2 simulated devices (RS_SIM_DEVICES), has %d\n", n_dev);
        return 1;
    }
    const double t0 = now_s();

    /* 3. fibers (first: the cases below build on kernels running right) */
    run_case("fiber: block reduction (__syncthreads + __shfl_xor_sync)", block_sum);
    run_case("fiber: divergent __syncthreads / warp op deadlock (child)", [] {
        expect_abort([] { launch_warp_kernel(&k_divergent, "k_divergent"); },
                     "deadlock: 16 threads wait at __syncthreads and 16 at a warp op", false);
    });
    run_case("fiber: full-mask shuffle after lanes exited (child)", [] {
        expect_abort([] { launch_warp_kernel(&k_shfl_after_exit, "k_shfl_after_exit"); },
                     "full-mask warp op while 16 lanes of the warp have exited", false);
    });
    run_case("fiber: full-mask shuffle, lanes exit after it began (child)", [] {
        expect_abort([] { launch_warp_kernel(&k_shfl_before_exit, "k_shfl_before_exit"); },
                     "deadlock: 0 threads wait at __syncthreads and 16 at a warp op", false);
    });

    /* 2. runtime */
    run_case("rt: cross-stream H2D then D2D without an event: race (child)",
             [] {
                 expect_abort([] { cross_stream(false); }, "race: cudaMemcpyAsync device->device 4096 bytes reads", true,
                              "its write by cudaMemcpyAsync host->device 4096 bytes");
             });
    run_case("rt: cross-stream with cudaEventRecord + cudaStreamWaitEvent (child)",
             [] { expect_clean([] { cross_stream(true); }); });
    run_case("rt: legacy cudaMemcpy H2D pageable, read on non-blocking: race (child)",
             [] {
                 expect_abort([] { legacy_then_nonblocking(false); },
                              "race: cudaMemcpyAsync device->device 1024 bytes reads", true,
                              "its write by cudaMemcpy host->device 1024 bytes");
             });
    run_case("rt: legacy cudaMemcpy H2D pinned, read on non-blocking (child)",
             [] { expect_clean([] { legacy_then_nonblocking(true); }); });
    run_case("rt: pinned source written before the queued copy ran (child)",
             [] { expect_abort([] { pinned_reuse(false); }, "the host wrote its pinned source (2048 bytes"); });
    run_case("rt: pinned source written after the copy's sync (child)",
             [] { expect_clean([] { pinned_reuse(true); }); });
    run_case("rt: cudaFree with another device current (child)",
             [] { expect_abort(free_on_other_device, "while device 1 is current"); });
    run_case("rt: cudaMemcpy from freed memory (child)",
             [] { expect_abort(copy_from_freed, "cudaMemcpy: use after free"); });
    run_case("rt: kernel argument into freed memory (child)",
             [] { expect_abort(kernel_on_freed, "a kernel argument", true, "already freed"); });
    run_case("rt: async D2H into pinned memory is deferred until the sync", deferred_d2h);
    run_case("rt: illegal kernel pointer: sticky cudaErrorIllegalAddress (child)",
             [] { expect_clean(sticky_illegal_address); });
    run_case("rt: cudaMalloc fault injection (rs_sim_set_fail_alloc)", fail_alloc);

    /* 4. NCCL: the fault child before this process's first ncclAllReduce */
    run_case("nccl: hang:1:0: NotReady until ncclCommAbort, then async error (child)",
             [] { expect_clean(nccl_hang); });
    run_case("nccl: mismatched element counts across ranks (child)",
             [] { expect_abort(nccl_mismatch, "mismatched all-reduce: rank 0 reduces 64 elements, rank 1 63"); });
    run_case("nccl: 2 ranks on 2 host threads, in-place bf16 sum", nccl_allreduce);

    /* 1. cuBLASLt */
    Lt lt;
    CUDA_OK(cudaSetDevice(0));
    CHECK(cublasLtCreate(&lt.h) == CUBLAS_STATUS_SUCCESS, "cublasLtCreate");
    CUDA_OK(cudaStreamCreateWithFlags(&lt.s, cudaStreamNonBlocking));
    run_case("cublaslt: A 2x3 * B 3x2, D with padded ld 4", [&] { lt_nn(lt); });
    run_case("cublaslt: TRANSA, A stored 3x2 with ld 4 (NaN padding)", [&] { lt_transa(lt); });
    run_case("cublaslt: TRANSB, B stored 2x3 with ld 3 (NaN padding)", [&] { lt_transb(lt); });
    run_case("cublaslt: BIAS epilogue adds bias[row] to every column", [&] { lt_bias(lt); });
    run_case("cublaslt: fp32 accumulation (1 + 4 * 2^-9 = 1.0078125)", [&] { lt_fp32_accumulation(lt); });
    run_case("cublaslt: refusals (compute, epilogue, ld, dims, alignment, n)", [&] { lt_refusals(lt); });
    CUDA_OK(cudaStreamDestroy(lt.s));
    cublasLtDestroy(lt.h);

    const int live = rs_sim_live_allocs();
    if (live != 0) {
        printf("FAIL %d allocations still live at the end\n", live);
        g_failures++;
    }
    printf("%s: %d failing case(s), %.3f s in all\n", g_failures ? "FAILED" : "PASSED", g_failures, now_s() - t0);
    return g_failures ? 1 : 0;
}
