// Where a step of the C++ CPU kernel spends its time: the product with the recurrent weights
// against the gate pass, forward and backward, one thread, on buffers already in memory.
//
// It includes the kernel's source and calls its per-block functions directly, timing each
// with the thread's CPU clock (so a busy machine slows it less than wall time would).
// Build and run from the repository root (the include directory is jaxlib's FFI headers):
//
//   g++ -O3 -std=c++17 -march=native -ffp-contract=fast \
//     -isystem "$(python -c 'import jax; print(jax.ffi.include_dir())')" \
//     benchmarks/cpu_kernel_steps.cc -o /tmp/cpu_kernel_steps && /tmp/cpu_kernel_steps
//
// Prints, for the LSTM and GRU at B = 16, H = 256 (the benchmark's 16x1024x256 rows) over
// 256 steps: microseconds per step of the product alone, the gates alone, and both.
#include <cstdio>
#include <ctime>
#include <vector>

#include "../jaxrnn/_kernels/csrc/rnn_cpu.cc"

namespace {

double cpu_ms() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

template <typename F>
double best_us_per_step(F f, int64_t steps) {
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const double start = cpu_ms();
    f();
    best = std::min(best, cpu_ms() - start);
  }
  return best * 1e3 / steps;
}

template <int KIND>
void measure(const char* name, int64_t T, int64_t B, int64_t H) {
  constexpr int G = NumGates(KIND);
  Dims d{1, T, B, H, G, G * H, (H + L - 1) / L};
  const int64_t hp = d.NB * L;
  std::vector<float> px(T * B * d.GH, 0.1f), w(d.GH * H, 0.01f), bias(d.GH, 0.0f), h0(B * H, 0.1f), c0(B * H, 0.1f);
  std::vector<float> h_all(T * B * H, 0.1f), c_all(T * B * H, 0.1f), act(T * B * 4 * H, 0.3f), d_h_all(T * B * H, 0.1f);
  std::vector<float> d_px(T * B * d.GH, 0.0f), d_rec(T * B * d.GH, 0.0f), wf(d.NB * H * G * L), wb(d.NB * d.GH * L);
  std::vector<float> dh_carry(B * hp, 0.0f), dc_carry(B * hp, 0.0f), dh_direct(B * hp, 0.0f);
  pack_forward(w.data(), d, wf.data());
  pack_backward(w.data(), d, wb.data());
  Fwd f{d, px.data(), wf.data(), bias.data(), h0.data(), c0.data(), nullptr, h_all.data(), c_all.data(), act.data()};
  Bwd k{d,        0,           act.data(),   wb.data(),       h0.data(),       c0.data(),        h_all.data(), c_all.data(),
        d_h_all.data(), nullptr, d_px.data(), KIND == kGru ? d_rec.data() : d_px.data(), dh_carry.data(),
        KIND == kLstm ? dc_carry.data() : nullptr, dh_direct.data()};
  vf out[4][G];
  volatile float sink = 0.0f;  // every product is read, so the compiler cannot drop any
  const double fwd_product = best_us_per_step([&] {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t nb = 0; nb < d.NB; ++nb)
        for (int64_t b0 = 0; b0 + 4 <= B; b0 += 4) {
          gemm_rows<4, G>(h_all.data() + (t * B + b0) * H, H, H, wf.data() + nb * H * G * L, G * L, L, out);
          for (int r = 0; r < 4; ++r)
            for (int g = 0; g < G; ++g) sink = sink + out[r][g][0];
        }
  }, T);
  const double fwd_step = best_us_per_step([&] {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t nb = 0; nb < d.NB; ++nb) forward_block<KIND>(f, t, nb);
  }, T);
  const double bwd_product = best_us_per_step([&] {
    for (int64_t s = T - 1; s >= 0; --s)
      for (int64_t nb = 0; nb + 2 <= d.NB; nb += 2) backward_products<2>(k, s, nb);
  }, T);
  const double bwd_gates = best_us_per_step([&] {
    for (int64_t s = T - 1; s >= 0; --s) backward_gates<KIND>(k, s, 0, d.NB);
  }, T);
  std::printf("%s B=%ld H=%ld, us per step: forward product %.1f, gates %.1f (whole step %.1f); "
              "backward product %.1f, gates %.1f\n",
              name, static_cast<long>(B), static_cast<long>(H), fwd_product, fwd_step - fwd_product, fwd_step,
              bwd_product, bwd_gates);
}

}  // namespace

int main() {
  measure<kLstm>("lstm", 256, 16, 256);
  measure<kGru>("gru", 256, 16, 256);
  return 0;
}
