// Weight gradient of a stride-1 depthwise convolution with "same" zero padding, channels-last fp32, on CPU:
//     dW[c, 0, i, j] = sum_{n,h,w} gy[n,h,w,c] * x[n, h+i-p, w+j-p, c],   p = k / 2.
// oneDNN's depthwise backward-weights kernel was 5-16x slower than this loop at the supernet's shapes
// (bench: docs/benchmarks.md, "Faster search iteration"); it was the single largest cost of a search iteration.
// Per (image row, kernel row i, block of 16 channels): k accumulators of 16 channels, one pass over the row.
// Threads split the image rows; their partial sums are added in a fixed order (deterministic per thread count).
// The convolution itself is a C++ autograd operator (torch.ops.ssnas.dw_conv): a Python autograd.Function
// around the loop cost ~14 ms of interpreter time per search iteration, a tenth of the time outside ATen.
#include <torch/autograd.h>
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <vector>

constexpr int64_t VEC = 16;   // channels per block (one AVX-512 register of fp32)

template <int64_t K>
static void rows_k(const float* XP, const float* G, float* acc0, int64_t r0, int64_t r1, int64_t H, int64_t W,
                   int64_t C) {
  const int64_t Hp = H + K - 1, Wp = W + K - 1;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / H, h = r % H;
    const float* grow = G + r * W * C;
    for (int64_t i = 0; i < K; ++i) {
      const float* xrow = XP + (n * Hp + h + i) * Wp * C;
      for (int64_t cb = 0; cb < C; cb += VEC) {
        const int64_t len = std::min(VEC, C - cb);
        float a[K][VEC] = {};
        for (int64_t w = 0; w < W; ++w) {
          const float* g = grow + w * C + cb;
          const float* xv = xrow + w * C + cb;
          if (len == VEC) {
            for (int64_t j = 0; j < K; ++j)
#pragma omp simd
              for (int64_t c = 0; c < VEC; ++c) a[j][c] += g[c] * xv[j * C + c];
          } else {
            for (int64_t j = 0; j < K; ++j)
              for (int64_t c = 0; c < len; ++c) a[j][c] += g[c] * xv[j * C + c];
          }
        }
        for (int64_t j = 0; j < K; ++j)
          for (int64_t c = 0; c < len; ++c) acc0[(i * K + j) * C + cb + c] += a[j][c];
      }
    }
  }
}

at::Tensor dw_weight_grad(const at::Tensor& x, const at::Tensor& gy, int64_t k) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && gy.sizes() == x.sizes());
  const int64_t p = k / 2;
  auto xp = at::constant_pad_nd(x, {p, p, p, p}).contiguous(at::MemoryFormat::ChannelsLast);
  auto gc = gy.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), KK = k * k;
  const float* XP = xp.data_ptr<float>();
  const float* G = gc.data_ptr<float>();
  const int nt = at::get_num_threads();
  std::vector<float> part((size_t)nt * KK * C, 0.f);
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    float* acc0 = part.data() + (size_t)at::get_thread_num() * KK * C;
    switch (k) {
      case 3: rows_k<3>(XP, G, acc0, begin, end, H, W, C); break;
      case 5: rows_k<5>(XP, G, acc0, begin, end, H, W, C); break;
      case 7: rows_k<7>(XP, G, acc0, begin, end, H, W, C); break;
      case 9: rows_k<9>(XP, G, acc0, begin, end, H, W, C); break;
      default: TORCH_CHECK(false, "kernel size ", k, " not compiled");
    }
  });
  auto out = at::zeros({KK, C}, x.options());
  float* O = out.data_ptr<float>();
  for (int t = 0; t < nt; ++t)
    for (int64_t q = 0; q < KK * C; ++q) O[q] += part[(size_t)t * KK * C + q];
  return out.t().reshape({C, 1, k, k}).contiguous();
}

static at::Tensor conv(const at::Tensor& x, const at::Tensor& w) {
  const int64_t p = w.size(-1) / 2;
  return at::convolution(x, w, {}, {1, 1}, {p, p}, {1, 1}, false, {0, 0}, x.size(1));
}

// y = depthwise conv(x, w), stride 1, "same" padding. Backward: ATen's input gradient, the loop's weight
// gradient; under create_graph (double backward, the Hessian tracking) both from differentiable ATen.
struct DepthwiseConv : public torch::autograd::Function<DepthwiseConv> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w) {
    ctx->save_for_backward({x, w});
    return conv(x, w);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &g = grads[0];
    const int64_t k = w.size(-1), p = k / 2;
    const bool need_x = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(1);
    const bool twice = at::GradMode::is_enabled();
    at::Tensor gx, gw;
    if (need_x || (need_w && twice)) {
      auto aten = at::convolution_backward(g, x, w, at::OptionalIntArrayRef{}, {1, 1}, {p, p}, {1, 1}, false,
                                           {0, 0}, x.size(1), {need_x, need_w && twice, false});
      gx = std::get<0>(aten);
      gw = std::get<1>(aten);
    }
    if (need_w && !twice) {   // through the dispatcher, so that profilers list the loop as the kernel it is
      static auto op = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("ssnas::dw_weight_grad", "")
                           .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>();
      gw = op.call(x, g, k);
    }
    return {gx, gw};
  }
};

static at::Tensor dw_conv_autograd(const at::Tensor& x, const at::Tensor& w) { return DepthwiseConv::apply(x, w); }

// Registered operators: the profiler lists them like ATen's (dw_weight_grad as a kernel).
TORCH_LIBRARY(ssnas, m) {
  m.def("dw_weight_grad(Tensor x, Tensor gy, int k) -> Tensor");
  m.def("dw_conv(Tensor x, Tensor weight) -> Tensor");
}
TORCH_LIBRARY_IMPL(ssnas, CPU, m) {
  m.impl("dw_weight_grad", &dw_weight_grad);
  m.impl("dw_conv", &conv);   // below autograd (no gradient wanted): the plain convolution
}
TORCH_LIBRARY_IMPL(ssnas, AutogradCPU, m) { m.impl("dw_conv", &dw_conv_autograd); }
