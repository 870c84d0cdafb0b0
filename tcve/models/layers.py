"""StyleGAN2 building blocks in plain PyTorch, with rosinality/stylegan2-pytorch parameter names.

No custom ops: FIR up/down-sampling is zero-insertion + pad + depthwise conv, the fused bias/leaky-ReLU is two
elementwise ops, and the modulated convolution is one grouped conv over the batch. Everything is batched and
free of host syncs so ``torch.compile`` can trace it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable FIR taps -> normalised 2-D kernel [k, k] (sums to 1)."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR filter (true convolution), downsample. x [B,C,H,W] -> [B,C,H',W'].

    Same arithmetic as the reference ``upfirdn2d_native``; ``pad`` is (before, after), equal on both axes and
    may be negative (crop).
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if p0 < 0 or p1 < 0:
        hh, ww = x.shape[2], x.shape[3]
        x = x[:, :, max(-p0, 0): hh - max(-p1, 0), max(-p0, 0): ww - max(-p1, 0)]
    # F.conv2d is correlation; flipping makes it the convolution upfirdn2d defines.
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None, clamp: float | None = None
) -> torch.Tensor:
    """Bias (per channel, dim 1) + leaky ReLU(0.2) * sqrt(2), then optional clamp to +-clamp (NVlabs conv_clamp)."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    x = F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class PixelNorm(nn.Module):
    """x / sqrt(mean(x^2 over dim 1) + 1e-8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: effective weight = weight * lr_mul / sqrt(in_dim)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, out]
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, activation={self.activation}"


class Blur(nn.Module):
    """FIR low-pass (buffer ``kernel``, stored in checkpoints) with fixed padding."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * (upsample_factor ** 2))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (buffer ``kernel``), used on the RGB skip path."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * (factor ** 2))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated (and optionally demodulated) conv, optionally 2x upsampling (transposed conv + blur).

    ``weight`` [1, O, I, k, k]; ``modulation`` maps w [B, style_dim] to the style s [B, I] (StyleSpace).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def extra_repr(self) -> str:
        return (f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, upsample={self.upsample}, "
                f"demodulate={self.demodulate}")

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.forward_style(x, self.modulation(w))

    def forward_style(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x [B, I, H, W], style [B, I] -> [B, O, H', W'] (H' = 2H when upsampling)."""
        b, c, h, w = x.shape
        if b > 1:
            return self._forward_batched(x, style)
        weight = self.scale * self.weight * style.reshape(b, 1, c, 1, 1)  # [B, O, I, k, k]
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.reshape(b, self.out_channel, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            # conv_transpose2d wants [in, out/groups, k, k] per group.
            weight = weight.transpose(1, 2).reshape(b * c, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            out = out.reshape(b, self.out_channel, out.shape[2], out.shape[3])
            return self.blur(out)
        out = F.conv2d(x, weight.reshape(b * self.out_channel, c, k, k), padding=self.padding, groups=b)
        return out.reshape(b, self.out_channel, out.shape[2], out.shape[3])

    def _forward_batched(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The same map for a batch: scale the input channels, run one shared-weight conv, scale the outputs.

        Grouped convs with one group per sample are slow on CPUs and in cuDNN; modulating activations instead of
        weights is exact algebra (conv is linear in its input) and batches like any conv.
        """
        b, c = x.shape[:2]
        weight = self.scale * self.weight[0]  # [O, I, k, k]
        x = x * style.reshape(b, c, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            demod = torch.rsqrt((style.square() @ weight.square().sum([2, 3]).T) + 1e-8)  # [B, O]
            out = out * demod.reshape(b, self.out_channel, 1, 1)
        return out


class NoiseInjection(nn.Module):
    """x + weight * noise (noise [B or 1, 1, H, W])."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:  # noise_mode 'none'
            return x
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """Learned 4x4 input ``input`` [1, C, 4, 4], repeated over the batch."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class FusedLeakyReLU(nn.Module):
    """Per-channel ``bias`` + scaled leaky ReLU, with optional output clamp."""

    def __init__(self, channel: int, clamp: float | None = None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))
        self.clamp = clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.clamp)


class StyledConv(nn.Module):
    """Modulated 3x3 conv -> noise -> bias + leaky ReLU (-> clamp)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1), demodulate: bool = True,
                 clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, demodulate=demodulate,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel, clamp=clamp)

    def forward_style(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return self.activate(self.noise(self.conv.forward_style(x, style), noise))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return self.forward_style(x, self.conv.modulation(w), noise)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + ``bias`` [1,3,1,1] (-> clamp), plus upsampled skip."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), clamp: float | None = None):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.clamp = clamp

    def forward_style(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = self.conv.forward_style(x, style) + self.bias
        if self.clamp is not None:
            out = out.clamp(-self.clamp, self.clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_style(x, self.conv.modulation(w), skip)
