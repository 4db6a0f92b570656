"""The two convolutions of a separable convolution, with CPU fast paths.

Both are ``nn.Conv2d`` subclasses (same weight shapes, state dict keys, initialisation and
hooks) that compute exactly a convolution's maths. They differ only in *how* PyTorch's CPU
backend is asked to do it, where its default route is measurably slow for Xception's shapes
(``benchmarks/model_throughput.py`` times the whole network against timm):

* :class:`PointwiseConv2d`: a 1x1 convolution is a matrix product, and MKL's GEMM beats oneDNN's
  1x1 convolution on small maps;
* :class:`DepthwiseConv2d`: oneDNN's weight gradient of a depthwise convolution takes 15-60x
  longer than needed when the map is smaller than the kernel (the middle and exit flows of a
  32x32 input run on 2x2 and 1x1 maps), so there the weight gradient is computed directly.

On CUDA both are the ordinary convolution.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DepthwiseConv2d", "PointwiseConv2d"]


class PointwiseConv2d(nn.Conv2d):
    """1x1 convolution without bias; an ``nn.Conv2d`` (same weight shape, state dict and hooks).

    A 1x1 convolution is a matrix product over the channel axis. On CPU, PyTorch sends it to
    oneDNN (or to its unfold-based fallback), which is measurably slower than MKL's GEMM where
    the feature maps are small, e.g. all of the network after the stem for 32x32 inputs. So, on
    CPU only, this computes the same product as a GEMM:

    * channels_last input: one ``F.linear`` over the NHWC view (no copies, result channels_last);
    * NCHW input with a map of at most ``GEMM_MAX_PIXELS`` pixels: a batched matmul over the
      (N, C, H*W) view. Larger NCHW maps keep the convolution, which is faster there.

    Elsewhere (CUDA, where cuDNN handles it well) it is the ordinary convolution.
    """

    #: NCHW maps up to this many pixels use the batched GEMM (measured crossover on CPU: the
    #: 10x10 exit flow at 299 input gains, the 19x19 middle flow does not).
    GEMM_MAX_PIXELS = 100

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dim() == 4:
            n, c, h, w = x.shape
            weight = self.weight.flatten(1)
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                # A real NHWC layout (not a 1x1 map, which is both): NCHW view of an NHWC result.
                return F.linear(x.permute(0, 2, 3, 1), weight).permute(0, 3, 1, 2)
            if x.is_contiguous() and h * w <= self.GEMM_MAX_PIXELS:
                if h * w == 1:
                    return F.linear(x.view(n, c), weight).view(n, -1, 1, 1)
                return torch.matmul(weight, x.view(n, c, h * w)).view(n, -1, h, w)
        return super().forward(x)


class DepthwiseConv2d(nn.Conv2d):
    """k x k depthwise convolution (multiplier 1, zero padding, no bias); an ``nn.Conv2d``.

    ``padding`` defaults to ``kernel_size // 2``: "same" for odd kernels at stride 1, as Keras'
    ``padding="same"``.

    On CPU, at stride 1, when the map is smaller than the kernel and a weight gradient is wanted, the
    backward pass computes that gradient itself: for each of the k*k kernel taps, the product of
    the output gradient with the input shifted by that tap, summed over batch and pixels (on the
    NHWC views, so the sums run over contiguous channel rows). For 728 channels on a 2x2 map at
    batch 64 that is about 1 ms where oneDNN takes about 20 ms; on larger maps oneDNN is faster
    and keeps the job. The forward pass and the input gradient are always oneDNN's; under CPU
    autocast (bf16) the whole convolution is.
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, *, stride: int = 1, padding: int | None = None
    ) -> None:
        if padding is None:
            padding = kernel_size // 2
        super().__init__(
            channels, channels, kernel_size, stride, padding, groups=channels, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        if (
            x.device.type == "cpu"
            and x.dim() == 4
            and self.stride == (1, 1)
            and isinstance(self.padding, tuple)  # not padding="same"
            and (x.shape[2] < kh or x.shape[3] < kw)
            and torch.is_grad_enabled()
            and self.weight.requires_grad
            and not torch.is_autocast_enabled("cpu")  # the Function would see mixed dtypes
        ):
            return _SmallMapDepthwise.apply(x, self.weight, self.padding)
        return super().forward(x)


class _SmallMapDepthwise(torch.autograd.Function):
    """Depthwise convolution (stride 1) whose weight gradient is a sum of k*k shifted products."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, padding=padding, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # differentiable ops only: double backward works
        x, weight = ctx.saved_tensors
        (ph, pw), (kh, kw) = ctx.padding, weight.shape[2:]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], list(ctx.padding), [1, 1], False, [0, 0],
                weight.shape[0], [True, False, False],
            )[0]
        if ctx.needs_input_grad[1]:
            oh, ow = grad.shape[2:]
            g = grad.permute(0, 2, 3, 1)  # N, OH, OW, C
            xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))  # N, H+2ph, W+2pw, C
            taps = [
                (g * xp[:, i : i + oh, j : j + ow, :]).sum((0, 1, 2))
                for i in range(kh)
                for j in range(kw)
            ]
            grad_w = torch.stack(taps, 1).view_as(weight)
        return grad_x, grad_w, None
