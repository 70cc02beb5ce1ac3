"""ldm.modules.diffusionmodules.model: the VAE Encoder/Decoder and blocks, as views on diffusers'.

`Encoder(vae.encoder)` / `Decoder(vae.decoder)` lay a diffusers AutoencoderKL half out with ldm's
names (conv_in, down[i].block[j], down[i].downsample, mid.block_1/attn_1/block_2, up[i].block[j],
up[i].upsample, norm_out, conv_out) over the same modules; the forwards are ldm's, op for op what
diffusers computes. Tiled VAE and similar extensions replace these forwards.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def nonlinearity(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.silu(x)


def Normalize(in_channels: int, num_groups: int = 32) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=num_groups, num_channels=in_channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, resnet: Any) -> None:
        super().__init__()
        self.in_channels = int(resnet.in_channels)
        self.out_channels = int(resnet.out_channels)
        self.use_conv_shortcut = False
        self.norm1 = resnet.norm1
        self.conv1 = resnet.conv1
        self.temb_proj = None
        self.norm2 = resnet.norm2
        self.dropout = resnet.dropout
        self.conv2 = resnet.conv2
        shortcut = getattr(resnet, "conv_shortcut", None)
        if shortcut is not None:
            self.nin_shortcut = shortcut

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(nonlinearity(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class _Pointwise(nn.Module):
    """A diffusers Linear seen as ldm's 1x1 convolution (q, k, v, proj_out): same parameters."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight[:, :, None, None]

    @property
    def bias(self) -> torch.Tensor | None:
        return self.linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return torch.nn.functional.conv2d(x, self.weight, self.bias)
        return self.linear(x)


class AttnBlock(nn.Module):
    def __init__(self, attention: Any) -> None:
        super().__init__()
        self.in_channels = int(attention.inner_dim)
        self.norm = attention.group_norm
        self.q = _Pointwise(attention.to_q)
        self.k = _Pointwise(attention.to_k)
        self.v = _Pointwise(attention.to_v)
        self.proj_out = _Pointwise(attention.to_out[0])
        self.__dict__["diffusers_attention"] = attention  # outside the tree: parameters listed once

    def forward(self, x: torch.Tensor) -> Any:
        # the diffusers layer: norm, attention (its processor, SDPA by default), projection, residual
        return self.__dict__["diffusers_attention"](x)


MemoryEfficientAttnBlock = AttnBlock  # ldm's xformers variant: the same interface (Tiled VAE imports it)


class Downsample(nn.Module):
    def __init__(self, downsampler: Any) -> None:
        super().__init__()
        self.with_conv = True
        self.conv = downsampler.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.nn.functional.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    def __init__(self, upsampler: Any) -> None:
        super().__init__()
        self.with_conv = True
        self.conv = upsampler.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.bfloat16:
            x = x.float()
        if x.shape[0] >= 64:
            x = x.contiguous()
        x = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x.to(dtype))


class _Mid(nn.Module):
    def __init__(self, block: Any) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(block.resnets[0])
        self.attn_1 = AttnBlock(block.attentions[0])
        self.block_2 = ResnetBlock(block.resnets[1])


def _mid(block: Any) -> Any:
    return _Mid(block)


def _level(resnets: Any, sampler_name: str, sampler: Any) -> nn.Module:
    level = nn.Module()  # ldm's anonymous level module: .block, .attn, .downsample / .upsample
    level.block = nn.ModuleList(ResnetBlock(r) for r in resnets)
    level.attn = nn.ModuleList()
    if sampler is not None:
        setattr(level, sampler_name, (Downsample if sampler_name == "downsample" else Upsample)(sampler))
    return level


class Encoder(nn.Module):
    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.conv_in = encoder.conv_in
        self.down = nn.ModuleList(
            _level(b.resnets, "downsample", b.downsamplers[0] if b.downsamplers else None) for b in encoder.down_blocks
        )
        self.num_resolutions = len(self.down)
        self.num_res_blocks = len(encoder.down_blocks[0].resnets)
        self.mid = _mid(encoder.mid_block)
        self.norm_out = encoder.conv_norm_out
        self.conv_out = encoder.conv_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        temb = None
        down: Any = self.down
        h = self.conv_in(x)
        for i_level in range(self.num_resolutions):
            for i_block in range(self.num_res_blocks):
                h = down[i_level].block[i_block](h, temb)
            if i_level != self.num_resolutions - 1:
                h = down[i_level].downsample(h)
        h = self.mid.block_1(h, temb)
        h = self.mid.attn_1(h)
        h = self.mid.block_2(h, temb)
        return self.conv_out(nonlinearity(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, decoder: Any) -> None:
        super().__init__()
        self.conv_in = decoder.conv_in
        self.mid = _mid(decoder.mid_block)
        ups = [_level(b.resnets, "upsample", b.upsamplers[0] if b.upsamplers else None) for b in decoder.up_blocks]
        self.up = nn.ModuleList(reversed(ups))  # ldm numbers levels from the highest resolution
        self.num_resolutions = len(self.up)
        self.num_res_blocks = len(decoder.up_blocks[0].resnets) - 1
        self.norm_out = decoder.conv_norm_out
        self.conv_out = decoder.conv_out
        self.give_pre_end = False
        self.tanh_out = False

    def forward(self, z: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        temb = None
        up: Any = self.up
        h = self.conv_in(z)
        h = self.mid.block_1(h, temb)
        h = self.mid.attn_1(h)
        h = self.mid.block_2(h, temb)
        for i_level in reversed(range(self.num_resolutions)):
            for i_block in range(self.num_res_blocks + 1):
                h = up[i_level].block[i_block](h, temb)
            if i_level != 0:
                h = up[i_level].upsample(h)
        if self.give_pre_end:
            return h
        h = self.conv_out(nonlinearity(self.norm_out(h)))
        return torch.tanh(h) if self.tanh_out else h
