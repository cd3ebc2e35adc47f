// The fused recurrence of jaxrnn's built-in cells for the CPU, as XLA FFI handlers.
//
// One call runs the whole sequential part of one layer (the contract of
// jaxrnn/_kernels/interface.py): the forward loop over time, or its reverse.
// The input projection before the loop and the weight gradients after it stay
// large XLA matmuls. The gate equations restate jaxrnn/_core/gates.py; the tests
// check these kernels against it and against their own NumPy equations.
//
// Per step: one product of the state with the recurrent weights (packed once per
// call into panels of L hidden units, so the product is a register-blocked loop
// of vector FMAs), fused with a vectorised pass over that block's gates. Work is
// split over threads by blocks of hidden units: a thread computes the gate
// columns of its units and then their new state, so a step needs one barrier.
// Threads come from XLA's own intra-op pool (the FFI ThreadPool), so the kernel
// never adds threads beside XLA's; the calling thread takes any share a worker
// has not claimed, so a busy pool slows a call but cannot stall it.
//
// float32 only. Elementwise maths: exp as Cephes' expf (range reduction and a
// degree-6 polynomial), sigmoid(x) = 1 / (1 + exp(-x)), tanh as Cephes' tanhf (an
// odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above). NaN
// propagates. The tests measure the error against float64.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int L = 16;  // floats per vector
#else
constexpr int L = 8;
#endif

typedef float vf __attribute__((vector_size(L * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(L * sizeof(float))));

inline vf splat(float x) { return vf{} + x; }
inline vi splat_i(int32_t x) { return vi{} + x; }
inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(vf));
  return v;
}
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof(vf)); }
// The first n lanes, the rest zero: the last block of a hidden size that is not a multiple of L.
inline vf load_n(const float* p, int n) {
  if (n == L) return load(p);
  vf v = {};
  std::memcpy(&v, p, n * sizeof(float));
  return v;
}
inline void store_n(float* p, vf v, int n) {
  if (n == L) {
    store(p, v);
  } else {
    std::memcpy(p, &v, n * sizeof(float));
  }
}
inline vf select(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
// Clamps that keep a NaN of x (a comparison with NaN is false, so x is kept).
inline vf clamp_below(vf x, float lo) { return select(x < splat(lo), splat(lo), x); }
inline vf clamp_above(vf x, float hi) { return select(x > splat(hi), splat(hi), x); }

inline vf vexp(vf x) {
  x = clamp_above(clamp_below(x, -87.3f), 88.3f);
  const vf shifter = splat(12582912.0f);  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  vf n = (x * 1.44269504088896341f + shifter) - shifter;
  vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  return p * (vf)e;
}

inline vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }

inline vf vtanh(vf x) {
  vi sign = (vi)x & splat_i(INT32_MIN);
  vf ax = (vf)((vi)x & splat_i(INT32_MAX));
  vf z = x * x;
  vf p = splat(-5.70498872745e-3f);
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  vf small = x + x * z * p;
  vf e = vexp(2.0f * clamp_above(ax, 10.0f));  // tanh(10) rounds to 1
  vf big = (vf)((vi)(1.0f - 2.0f / (e + 1.0f)) | sign);
  return select(ax < splat(0.625f), small, big);
}

inline vf vrelu(vf x) { return select(x < splat(0.0f), splat(0.0f), x); }

// The cells, as jaxrnn/_core/gates.py's KINDS.
enum Kind : int64_t { kElmanTanh = 0, kElmanRelu = 1, kLstm = 2, kGru = 3 };
constexpr int NumGates(int kind) { return kind == kLstm ? 4 : kind == kGru ? 3 : 1; }
// Activation blocks the forward keeps for the reverse (Elman's is its state, kept anyway).
constexpr int NumActs(int kind) { return kind == kLstm || kind == kGru ? 4 : 0; }

// Keeps v in a register: without it the compiler folds the load into every FMA that reads v,
// and a block's weights are loaded once per row instead of once (the loop is then load-bound).
inline void in_register(vf& v) {
#if defined(__GNUC__) && defined(__x86_64__)  // "v": any SSE/AVX register; elsewhere the compiler decides
  __asm__("" : "+v"(v));
#else
  (void)v;
#endif
}

// out[r][v] = sum_k a[r * lda + k] * w[k * ws + v * vo + 0..L): MR rows by NV vectors,
// with P partial sums over k so that enough independent FMAs are in flight.
template <int MR, int NV>
inline void gemm_rows(const float* a, int64_t lda, int64_t K, const float* w, int64_t ws, int64_t vo,
                      vf out[MR][NV]) {
  constexpr int P = std::max(1, std::min(4, 8 / (MR * NV)));
  vf acc[P][MR][NV];
  for (int p = 0; p < P; ++p)
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) acc[p][r][v] = vf{};
  int64_t k = 0;
  for (; k + P <= K; k += P) {
    for (int p = 0; p < P; ++p) {
      vf wv[NV];
      for (int v = 0; v < NV; ++v) {
        wv[v] = load(w + (k + p) * ws + v * vo);
        in_register(wv[v]);
      }
      for (int r = 0; r < MR; ++r) {
        float s = a[r * lda + k + p];
        for (int v = 0; v < NV; ++v) acc[p][r][v] += wv[v] * s;
      }
    }
  }
  for (; k < K; ++k) {
    for (int v = 0; v < NV; ++v) {
      vf wv = load(w + k * ws + v * vo);
      for (int r = 0; r < MR; ++r) acc[0][r][v] += wv * a[r * lda + k];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      vf s = acc[0][r][v];
      for (int p = 1; p < P; ++p) s += acc[p][r][v];
      out[r][v] = s;
    }
}

// ---------------------------------------------------------------------------------------------
// Threads: a step's blocks of hidden units are split into `chunks` contiguous shares; each
// stage (a time step) publishes a ticket (stage number, next share) that the caller and the
// workers claim shares from; the caller waits until every share of the stage is done.

struct Team {
  std::atomic<uint64_t> ticket{0};  // (stage + 1) << 32 | next share
  std::atomic<int> done{0};
  std::atomic<bool> finished{false};
  int chunks = 1;
  std::thread::id caller;
  std::function<void(int64_t stage, int chunk)> work;

  bool claim(uint64_t gen, int* chunk) {
    uint64_t t = ticket.load(std::memory_order_acquire);
    while ((t >> 32) == gen && static_cast<int>(t & 0xffffffffu) < chunks) {
      if (ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) {
        *chunk = static_cast<int>(t & 0xffffffffu);
        return true;
      }
    }
    return false;
  }

  void drain(uint64_t gen) {
    int chunk;
    while (claim(gen, &chunk)) {
      work(static_cast<int64_t>(gen) - 1, chunk);
      done.fetch_add(1, std::memory_order_acq_rel);
    }
  }
};

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

void worker(std::shared_ptr<Team> team) {
  // Run inline by a pool that cannot schedule (the FFI then calls the task in place): nothing to do.
  if (std::this_thread::get_id() == team->caller) return;
  uint64_t seen = 0;
  int64_t idle = 0;
  while (!team->finished.load(std::memory_order_acquire)) {
    uint64_t gen = team->ticket.load(std::memory_order_acquire) >> 32;
    if (gen != seen) {
      seen = gen;
      idle = 0;
      team->drain(gen);
    } else if (++idle > 4096) {
      std::this_thread::yield();
    } else {
      relax();
    }
  }
}

// Runs work(stage, chunk) for stage 0..stages-1 and every chunk, stage after stage.
void run_stages(ffi::ThreadPool& pool, int threads, int chunks, int64_t stages,
                std::function<void(int64_t, int)> work) {
  if (threads <= 1 || chunks <= 1) {
    for (int64_t s = 0; s < stages; ++s)
      for (int c = 0; c < chunks; ++c) work(s, c);
    return;
  }
  auto team = std::make_shared<Team>();
  team->chunks = chunks;
  team->caller = std::this_thread::get_id();
  team->work = std::move(work);
  for (int i = 1; i < threads; ++i) pool.Schedule([team] { worker(team); });
  for (int64_t s = 0; s < stages; ++s) {
    uint64_t gen = static_cast<uint64_t>(s) + 1;
    team->done.store(0, std::memory_order_relaxed);
    team->ticket.store(gen << 32, std::memory_order_release);
    team->drain(gen);
    // A worker that claimed a share may have been preempted (more threads than cores): yield
    // after a while, so that it can finish instead of waiting out this thread's time slice.
    for (int64_t spins = 0; team->done.load(std::memory_order_acquire) < chunks; ++spins) {
      if (spins > 4096) {
        std::this_thread::yield();
      } else {
        relax();
      }
    }
  }
  team->finished.store(true, std::memory_order_release);
}


// ---------------------------------------------------------------------------------------------
// Shapes of one call (the leading axes of vmap, if any, are `batch_calls` independent calls).

struct Dims {
  int64_t calls, T, B, H, G, GH, NB;
};

// The fewest multiply-adds of a step's product per thread for "auto" to add a thread: below it,
// a step's barrier costs more than the share saves (measured: benchmarks/NOTES.md).
constexpr int64_t kMinWorkPerThread = 1 << 12;

// Threads for one call: at most the pool's (XLA's intra-op threads), the blocks of units, and
// `requested` when given; with "auto" (requested 0), one per kMinWorkPerThread of work a step.
int choose_threads(ffi::ThreadPool& pool, int64_t requested, const Dims& d) {
  const int64_t available = std::max<int64_t>(pool.num_threads(), 1);
  const int64_t want = requested > 0 ? requested : std::max<int64_t>(1, d.B * d.GH * d.H / kMinWorkPerThread);
  return static_cast<int>(std::max<int64_t>(1, std::min({want, available, d.NB})));
}

ffi::Error check(bool ok, const char* what) {
  return ok ? ffi::Error::Success() : ffi::Error(ffi::ErrorCode::kInvalidArgument, what);
}

// Weights packed for the forward, [NB][H (k)][G][L]: a block's gate columns for one k side by side.
void pack_forward(const float* w, const Dims& d, float* fwd) {
  for (int64_t nb = 0; nb < d.NB; ++nb)
    for (int64_t k = 0; k < d.H; ++k)
      for (int g = 0; g < d.G; ++g)
        for (int l = 0; l < L; ++l) {
          const int64_t u = nb * L + l;
          fwd[((nb * d.H + k) * d.G + g) * L + l] = u < d.H ? w[(g * d.H + u) * d.H + k] : 0.0f;
        }
}

// Weights packed for the backward, [NB][G*H (r)][L]: W's columns of a block, zero-padded.
void pack_backward(const float* w, const Dims& d, float* bwd) {
  for (int64_t nb = 0; nb < d.NB; ++nb)
    for (int64_t r = 0; r < d.GH; ++r)
      for (int l = 0; l < L; ++l) {
        const int64_t u = nb * L + l;
        bwd[(nb * d.GH + r) * L + l] = u < d.H ? w[r * d.H + u] : 0.0f;
      }
}

// ---------------------------------------------------------------------------------------------
// Forward.

struct Fwd {
  Dims d;
  const float *px, *wf, *bias, *h0, *c0;
  const bool* mask;
  float *h_all, *c_all, *act;
};

template <int KIND, int MR>
void forward_rows(const Fwd& f, int64_t t, int64_t nb, int64_t b0) {
  constexpr int G = NumGates(KIND), A = NumActs(KIND);
  const Dims& d = f.d;
  const int64_t u0 = nb * L;
  const int n = static_cast<int>(std::min<int64_t>(L, d.H - u0));
  const float* h_prev = t == 0 ? f.h0 : f.h_all + (t - 1) * d.B * d.H;
  vf rec[MR][G];
  gemm_rows<MR, G>(h_prev + b0 * d.H, d.H, d.H, f.wf + nb * d.H * G * L, G * L, L, rec);
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r, row = t * d.B + b;
    const float* px = f.px + row * d.GH + u0;
    vf a[G];
    for (int g = 0; g < G; ++g) a[g] = rec[r][g] + load_n(f.bias + g * d.H + u0, n);
    vf hp = load_n(h_prev + b * d.H + u0, n);
    vf h, c = {};
    vf acts[A > 0 ? A : 1];
    if constexpr (KIND == kElmanTanh) {
      h = vtanh(load_n(px, n) + a[0]);
    } else if constexpr (KIND == kElmanRelu) {
      h = vrelu(load_n(px, n) + a[0]);
    } else if constexpr (KIND == kLstm) {
      const float* c_prev_row = t == 0 ? f.c0 + b * d.H : f.c_all + (row - d.B) * d.H;
      vf cp = load_n(c_prev_row + u0, n);
      vf i = vsigmoid(load_n(px, n) + a[0]);
      vf fg = vsigmoid(load_n(px + d.H, n) + a[1]);
      vf g = vtanh(load_n(px + 2 * d.H, n) + a[2]);
      vf o = vsigmoid(load_n(px + 3 * d.H, n) + a[3]);
      c = fg * cp + i * g;
      h = o * vtanh(c);
      acts[0] = i, acts[1] = fg, acts[2] = g, acts[3] = o;
      if (f.mask && !f.mask[row]) h = hp, c = cp;
      store_n(f.c_all + row * d.H + u0, c, n);
    } else {
      vf rg = vsigmoid(load_n(px, n) + a[0]);
      vf z = vsigmoid(load_n(px + d.H, n) + a[1]);
      vf nn = vtanh(load_n(px + 2 * d.H, n) + rg * a[2]);
      h = (1.0f - z) * nn + z * hp;
      acts[0] = rg, acts[1] = z, acts[2] = nn, acts[3] = a[2];
    }
    if (f.mask && !f.mask[row]) h = hp;
    store_n(f.h_all + row * d.H + u0, h, n);
    if (f.act)
      for (int q = 0; q < A; ++q) store_n(f.act + row * A * d.H + q * d.H + u0, acts[q], n);
  }
}

template <int KIND>
void forward_block(const Fwd& f, int64_t t, int64_t nb) {
  int64_t b0 = 0;
  for (; b0 + 4 <= f.d.B; b0 += 4) forward_rows<KIND, 4>(f, t, nb, b0);
  switch (f.d.B - b0) {
    case 3: forward_rows<KIND, 3>(f, t, nb, b0); break;
    case 2: forward_rows<KIND, 2>(f, t, nb, b0); break;
    case 1: forward_rows<KIND, 1>(f, t, nb, b0); break;
    default: break;
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: stage s (s = T..0) runs, per block of units, the product for step s (the cotangent
// of the state entering step s, when s < T) and then the gates' reverse of step s - 1 (s > 0).

struct Bwd {
  Dims d;
  int64_t truncate;
  const float *act, *wb, *h0, *c0, *h_all, *c_all, *d_h_all;
  const bool* mask;
  float *d_px, *d_rec;           // d_rec == d_px but for the GRU
  float *dh_carry, *dc_carry;    // [B][NB*L]: the cotangents of the state entering the current step
  float* dh_direct;              // [B][NB*L]: the cotangent of that state through all but the product
};

template <int MR, int NV>
void backward_product(const Bwd& k, int64_t s, int64_t nb, int64_t b0) {
  const Dims& d = k.d;
  const int64_t hp = d.NB * L;
  vf out[MR][NV];
  gemm_rows<MR, NV>(k.d_rec + (s * d.B + b0) * d.GH, d.GH, d.GH, k.wb + nb * d.GH * L, L, d.GH * L, out);
  const bool cut = k.truncate > 0 && s > 0 && s % k.truncate == 0;
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      const int64_t at = (b0 + r) * hp + (nb + v) * L;
      store(k.dh_carry + at, cut ? vf{} : out[r][v] + load(k.dh_direct + at));
      if (cut && k.dc_carry) store(k.dc_carry + at, vf{});
    }
}

template <int NV>
void backward_products(const Bwd& k, int64_t s, int64_t nb) {
  int64_t b0 = 0;
  for (; b0 + 4 <= k.d.B; b0 += 4) backward_product<4, NV>(k, s, nb, b0);
  switch (k.d.B - b0) {
    case 3: backward_product<3, NV>(k, s, nb, b0); break;
    case 2: backward_product<2, NV>(k, s, nb, b0); break;
    case 1: backward_product<1, NV>(k, s, nb, b0); break;
    default: break;
  }
}

// Blocks lo..hi-1 of step t, row by row so that each row's arrays are read and written in runs.
template <int KIND>
void backward_gates(const Bwd& k, int64_t t, int64_t lo, int64_t hi) {
  constexpr int G = NumGates(KIND), A = NumActs(KIND);
  const Dims& d = k.d;
  const int64_t hp = d.NB * L;
  for (int64_t b = 0; b < d.B; ++b)
  for (int64_t nb = lo; nb < hi; ++nb) {
    const int64_t u0 = nb * L;
    const int n = static_cast<int>(std::min<int64_t>(L, d.H - u0));
    const int64_t row = t * d.B + b, at = b * hp + u0;
    vf dh = load(k.dh_carry + at) + load_n(k.d_h_all + row * d.H + u0, n);
    float* d_px = k.d_px + row * d.GH + u0;
    float* d_rec = k.d_rec + row * d.GH + u0;
    if (k.mask && !k.mask[row]) {  // a skipped step: no deltas, the cotangents pass through
      for (int g = 0; g < G; ++g) {
        store_n(d_px + g * d.H, vf{}, n);
        if (d_rec != d_px) store_n(d_rec + g * d.H, vf{}, n);
      }
      store(k.dh_direct + at, dh);
      continue;
    }
    if constexpr (KIND == kElmanTanh || KIND == kElmanRelu) {
      vf a = load_n(k.h_all + row * d.H + u0, n);
      vf slope = KIND == kElmanTanh ? 1.0f - a * a : select(a > splat(0.0f), splat(1.0f), splat(0.0f));
      store_n(d_px, dh * slope, n);
      store(k.dh_direct + at, vf{});
    } else if constexpr (KIND == kLstm) {
      const float* act = k.act + row * A * d.H + u0;
      vf i = load_n(act, n), f = load_n(act + d.H, n), g = load_n(act + 2 * d.H, n), o = load_n(act + 3 * d.H, n);
      vf c = load_n(k.c_all + row * d.H + u0, n);
      vf cp = load_n((t == 0 ? k.c0 + b * d.H : k.c_all + (row - d.B) * d.H) + u0, n);
      vf tc = vtanh(c);
      vf dc = load(k.dc_carry + at) + dh * o * (1.0f - tc * tc);
      store_n(d_px, dc * g * i * (1.0f - i), n);
      store_n(d_px + d.H, dc * cp * f * (1.0f - f), n);
      store_n(d_px + 2 * d.H, dc * i * (1.0f - g * g), n);
      store_n(d_px + 3 * d.H, dh * tc * o * (1.0f - o), n);
      store(k.dc_carry + at, dc * f);
      store(k.dh_direct + at, vf{});
    } else {
      const float* act = k.act + row * A * d.H + u0;
      vf r = load_n(act, n), z = load_n(act + d.H, n), nn = load_n(act + 2 * d.H, n), hn = load_n(act + 3 * d.H, n);
      vf hprev = load_n((t == 0 ? k.h0 + b * d.H : k.h_all + (row - d.B) * d.H) + u0, n);
      vf dan = dh * (1.0f - z) * (1.0f - nn * nn);
      vf daz = dh * (hprev - nn) * z * (1.0f - z);
      vf dar = dan * hn * r * (1.0f - r);
      store_n(d_px, dar, n);
      store_n(d_px + d.H, daz, n);
      store_n(d_px + 2 * d.H, dan, n);
      store_n(d_rec, dar, n);
      store_n(d_rec + d.H, daz, n);
      store_n(d_rec + 2 * d.H, dan * r, n);
      store(k.dh_direct + at, dh * z);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The handlers.

// From px (forward) or d_px (backward): [..., T, B, G*H], and w_hh [..., G*H, H].
template <typename Gates>
ffi::Error dims_of(const Gates& px, const ffi::Buffer<ffi::F32>& w_hh, int64_t kind, Dims* d) {
  if (kind < 0 || kind > 3) return check(false, "jaxrnn cpu kernel: kind must be 0..3");
  auto pd = px.dimensions();
  auto wd = w_hh.dimensions();
  if (pd.size() < 3 || wd.size() < 2) return check(false, "jaxrnn cpu kernel: px needs [T, B, G*H], w_hh [G*H, H]");
  d->G = NumGates(static_cast<int>(kind));
  d->H = wd[wd.size() - 1];
  d->GH = d->G * d->H;
  d->T = pd[pd.size() - 3];
  d->B = pd[pd.size() - 2];
  if (pd[pd.size() - 1] != d->GH || wd[wd.size() - 2] != d->GH)
    return check(false, "jaxrnn cpu kernel: px's last axis and w_hh's first must be G*H");
  int64_t per = d->T * d->B * d->GH;
  d->calls = per == 0 ? 0 : static_cast<int64_t>(px.element_count()) / per;
  d->NB = (d->H + L - 1) / L;
  if (static_cast<int64_t>(w_hh.element_count()) != d->calls * d->GH * d->H)
    return check(false, "jaxrnn cpu kernel: w_hh must have px's leading (vmapped) axes");
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> px, ffi::Buffer<ffi::F32> w_hh,
                   ffi::Buffer<ffi::F32> b_hh, ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
                   ffi::Buffer<ffi::PRED> mask, ffi::ResultBuffer<ffi::F32> h_all, ffi::ResultBuffer<ffi::F32> c_all,
                   ffi::ResultBuffer<ffi::F32> act, int64_t kind, int64_t threads, int64_t has_mask) {
  Dims d;
  if (auto e = dims_of(px, w_hh, kind, &d); e.failure()) return e;
  if (d.calls == 0 || d.B == 0 || d.H == 0) return ffi::Error::Success();
  const int A = NumActs(static_cast<int>(kind));
  const bool lstm = kind == kLstm;
  const bool keep = A > 0 && act->element_count() != 0;  // an empty act: a forward pass with no reverse after it
  if (static_cast<int64_t>(h0.element_count()) != d.calls * d.B * d.H ||
      static_cast<int64_t>(h_all->element_count()) != d.calls * d.T * d.B * d.H ||
      static_cast<int64_t>(b_hh.element_count()) != d.calls * d.GH ||
      (lstm && static_cast<int64_t>(c0.element_count()) != d.calls * d.B * d.H) ||
      (lstm && static_cast<int64_t>(c_all->element_count()) != d.calls * d.T * d.B * d.H) ||
      (keep && static_cast<int64_t>(act->element_count()) != d.calls * d.T * d.B * A * d.H) ||
      (has_mask && static_cast<int64_t>(mask.element_count()) != d.calls * d.T * d.B))
    return check(false, "jaxrnn cpu kernel (forward): operand shapes do not match px and w_hh");
  std::vector<float> wf(d.NB * d.H * d.G * L);
  const int nthreads = choose_threads(pool, threads, d);
  for (int64_t v = 0; v < d.calls; ++v) {
    pack_forward(w_hh.typed_data() + v * d.GH * d.H, d, wf.data());
    Fwd f{d,
          px.typed_data() + v * d.T * d.B * d.GH,
          wf.data(),
          b_hh.typed_data() + v * d.GH,
          h0.typed_data() + v * d.B * d.H,
          lstm ? c0.typed_data() + v * d.B * d.H : nullptr,
          has_mask ? mask.typed_data() + v * d.T * d.B : nullptr,
          h_all->typed_data() + v * d.T * d.B * d.H,
          lstm ? c_all->typed_data() + v * d.T * d.B * d.H : nullptr,
          keep ? act->typed_data() + v * d.T * d.B * A * d.H : nullptr};
    auto block = kind == kElmanTanh   ? &forward_block<kElmanTanh>
                 : kind == kElmanRelu ? &forward_block<kElmanRelu>
                 : kind == kLstm      ? &forward_block<kLstm>
                                      : &forward_block<kGru>;
    const int64_t per = (d.NB + nthreads - 1) / nthreads;
    run_stages(pool, nthreads, nthreads, d.T, [&](int64_t t, int chunk) {
      for (int64_t nb = chunk * per; nb < std::min(d.NB, (chunk + 1) * per); ++nb) block(f, t, nb);
    });
  }
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> act, ffi::Buffer<ffi::F32> w_hh,
                    ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> h_all,
                    ffi::Buffer<ffi::F32> c_all, ffi::Buffer<ffi::PRED> mask, ffi::Buffer<ffi::F32> d_h_all,
                    ffi::Buffer<ffi::F32> d_c_last, ffi::ResultBuffer<ffi::F32> d_px, ffi::ResultBuffer<ffi::F32> d_rec,
                    ffi::ResultBuffer<ffi::F32> d_h0, ffi::ResultBuffer<ffi::F32> d_c0, int64_t kind, int64_t threads,
                    int64_t has_mask, int64_t truncate) {
  Dims d;
  if (auto e = dims_of(*d_px, w_hh, kind, &d); e.failure()) return e;
  if (d.calls == 0 || d.B == 0 || d.H == 0) return ffi::Error::Success();
  const int A = NumActs(static_cast<int>(kind));
  const bool lstm = kind == kLstm, gru = kind == kGru;
  const int64_t seq = d.T * d.B * d.H;
  if (static_cast<int64_t>(h0.element_count()) != d.calls * d.B * d.H ||
      static_cast<int64_t>(h_all.element_count()) != d.calls * seq ||
      static_cast<int64_t>(d_h_all.element_count()) != d.calls * seq ||
      static_cast<int64_t>(act.element_count()) != d.calls * d.T * d.B * A * d.H ||
      (lstm && (static_cast<int64_t>(c_all.element_count()) != d.calls * seq ||
                static_cast<int64_t>(c0.element_count()) != d.calls * d.B * d.H ||
                static_cast<int64_t>(d_c_last.element_count()) != d.calls * d.B * d.H)) ||
      (gru && static_cast<int64_t>(d_rec->element_count()) != d.calls * d.T * d.B * d.GH) ||
      (has_mask && static_cast<int64_t>(mask.element_count()) != d.calls * d.T * d.B))
    return check(false, "jaxrnn cpu kernel (backward): operand shapes do not match d_px and w_hh");
  const int64_t hp = d.NB * L;
  std::vector<float> wb(d.NB * d.GH * L);
  std::vector<float> dh_carry(d.B * hp), dc_carry(lstm ? d.B * hp : 0), dh_direct(d.B * hp);
  const int nthreads = choose_threads(pool, threads, d);
  for (int64_t v = 0; v < d.calls; ++v) {
    pack_backward(w_hh.typed_data() + v * d.GH * d.H, d, wb.data());
    std::fill(dh_carry.begin(), dh_carry.end(), 0.0f);
    std::fill(dh_direct.begin(), dh_direct.end(), 0.0f);
    if (lstm) {
      std::fill(dc_carry.begin(), dc_carry.end(), 0.0f);
      for (int64_t b = 0; b < d.B; ++b)
        std::memcpy(dc_carry.data() + b * hp, d_c_last.typed_data() + (v * d.B + b) * d.H, d.H * sizeof(float));
    }
    float* dpx = d_px->typed_data() + v * d.T * d.B * d.GH;
    Bwd k{d,
          truncate,
          A ? act.typed_data() + v * d.T * d.B * A * d.H : nullptr,
          wb.data(),
          h0.typed_data() + v * d.B * d.H,
          lstm ? c0.typed_data() + v * d.B * d.H : nullptr,
          h_all.typed_data() + v * seq,
          lstm ? c_all.typed_data() + v * seq : nullptr,
          d_h_all.typed_data() + v * seq,
          has_mask ? mask.typed_data() + v * d.T * d.B : nullptr,
          dpx,
          gru ? d_rec->typed_data() + v * d.T * d.B * d.GH : dpx,
          dh_carry.data(),
          lstm ? dc_carry.data() : nullptr,
          dh_direct.data()};
    auto gates = kind == kElmanTanh   ? &backward_gates<kElmanTanh>
                 : kind == kElmanRelu ? &backward_gates<kElmanRelu>
                 : kind == kLstm      ? &backward_gates<kLstm>
                                      : &backward_gates<kGru>;
    // Shares of whole pairs of blocks, so that the product can run two blocks at once.
    const int64_t pairs = (d.NB + 1) / 2;
    const int64_t per = 2 * ((pairs + nthreads - 1) / nthreads);
    run_stages(pool, nthreads, nthreads, d.T + 1, [&](int64_t stage, int chunk) {
      const int64_t s = d.T - stage;
      const int64_t lo = chunk * per, hi = std::min(d.NB, (chunk + 1) * per);
      if (s < d.T) {
        int64_t nb = lo;
        for (; nb + 2 <= hi; nb += 2) backward_products<2>(k, s, nb);
        if (nb < hi) backward_products<1>(k, s, nb);
      }
      if (s > 0) gates(k, s - 1, lo, hi);
    });
    for (int64_t b = 0; b < d.B; ++b) {
      std::memcpy(d_h0->typed_data() + (v * d.B + b) * d.H, dh_carry.data() + b * hp, d.H * sizeof(float));
      if (lstm)
        std::memcpy(d_c0->typed_data() + (v * d.B + b) * d.H, dc_carry.data() + b * hp, d.H * sizeof(float));
    }
  }
  return ffi::Error::Success();
}

// The kernel's sigmoid and tanh on an array, for the tests that measure their error.
ffi::Error Activations(ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> sigmoid, ffi::ResultBuffer<ffi::F32> tanh) {
  const int64_t n = static_cast<int64_t>(x.element_count());
  const float* in = x.typed_data();
  for (int64_t i = 0; i < n; i += L) {
    const int m = static_cast<int>(std::min<int64_t>(L, n - i));
    vf v = load_n(in + i, m);
    store_n(sigmoid->typed_data() + i, vsigmoid(v), m);
    store_n(tanh->typed_data() + i, vtanh(v), m);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnCpuForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // px
                                  .Arg<ffi::Buffer<ffi::F32>>()   // w_hh
                                  .Arg<ffi::Buffer<ffi::F32>>()   // b_hh
                                  .Arg<ffi::Buffer<ffi::F32>>()   // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()   // c0 (LSTM; else ignored)
                                  .Arg<ffi::Buffer<ffi::PRED>>()  // mask
                                  .Ret<ffi::Buffer<ffi::F32>>()   // h_all
                                  .Ret<ffi::Buffer<ffi::F32>>()   // c_all (LSTM)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // act (LSTM, GRU)
                                  .Attr<int64_t>("kind")
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("has_mask"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnCpuBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // act
                                  .Arg<ffi::Buffer<ffi::F32>>()   // w_hh
                                  .Arg<ffi::Buffer<ffi::F32>>()   // h0
                                  .Arg<ffi::Buffer<ffi::F32>>()   // c0 (LSTM)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // h_all
                                  .Arg<ffi::Buffer<ffi::F32>>()   // c_all (LSTM)
                                  .Arg<ffi::Buffer<ffi::PRED>>()  // mask
                                  .Arg<ffi::Buffer<ffi::F32>>()   // d_h_all
                                  .Arg<ffi::Buffer<ffi::F32>>()   // d_c_last (LSTM)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // d_px
                                  .Ret<ffi::Buffer<ffi::F32>>()   // d_rec (GRU)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // d_h0
                                  .Ret<ffi::Buffer<ffi::F32>>()   // d_c0 (LSTM)
                                  .Attr<int64_t>("kind")
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("has_mask")
                                  .Attr<int64_t>("truncate"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrnnCpuActivations, Activations,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
