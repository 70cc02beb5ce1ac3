"""ldm.modules.diffusionmodules.openaimodel: UNetModel and its blocks, as views on a diffusers UNet.

`UNetModel.from_diffusers(unet)` lays the diffusers UNet2DConditionModel out in ldm's tree
(time_embed, input_blocks, middle_block, output_blocks, out, label_emb for SDXL); every leaf
module is the diffusers one, so the view costs no memory and weight patches (LoRA, fp8) apply to
both. The forward is ldm's, op for op the computation diffusers does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ldm.modules import attention
from ldm.modules.diffusionmodules.util import timestep_embedding

SpatialTransformer = attention.SpatialTransformer  # ldm's openaimodel imports it: extensions reach it here


class TimestepBlock(nn.Module):
    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    def forward(  # type: ignore[override]
        self, x: torch.Tensor, emb: torch.Tensor, context: Any = None, output_shape: Any = None
    ) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, emb)
            elif isinstance(layer, attention.SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, Upsample) and output_shape is not None:
                x = layer(x, output_shape=output_shape)
            else:
                x = layer(x)
        return x


class ResBlock(TimestepBlock):
    def __init__(self, resnet: Any) -> None:
        super().__init__()
        self.channels = int(resnet.in_channels)
        self.out_channels = int(resnet.out_channels)
        self.in_layers = nn.Sequential(resnet.norm1, nn.SiLU(), resnet.conv1)
        self.emb_layers = nn.Sequential(nn.SiLU(), resnet.time_emb_proj)
        self.out_layers = nn.Sequential(resnet.norm2, nn.SiLU(), resnet.dropout, resnet.conv2)
        shortcut = getattr(resnet, "conv_shortcut", None)
        self.skip_connection = shortcut if shortcut is not None else nn.Identity()
        self.use_checkpoint = False

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self._forward(x, emb)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        while emb_out.ndim < h.ndim:
            emb_out = emb_out[..., None]
        h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    def __init__(self, downsampler: Any) -> None:
        super().__init__()
        self.op = downsampler.conv
        self.channels = int(downsampler.channels)
        self.out_channels = int(downsampler.out_channels)
        self.dims = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, upsampler: Any) -> None:
        super().__init__()
        self.conv = upsampler.conv
        self.channels = int(upsampler.channels)
        self.out_channels = int(upsampler.out_channels)
        self.dims = 2

    def forward(self, x: torch.Tensor, output_shape: Any = None) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.bfloat16:
            x = x.float()  # nearest upsampling lacks bf16 kernels on some torch builds (diffusers does the same)
        if x.shape[0] >= 64:
            x = x.contiguous()
        if output_shape is None:
            x = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = nn.functional.interpolate(x, size=tuple(output_shape[-2:]), mode="nearest")
        return self.conv(x.to(dtype))


class UNetModel(nn.Module):
    """ldm's UNetModel over a diffusers UNet2DConditionModel (SD1, SD2, SDXL, inpainting)."""

    transformer_class: type[attention.SpatialTransformer] = attention.SpatialTransformer
    resblock_class: type[ResBlock] = ResBlock

    def __init__(self, unet: Any) -> None:
        super().__init__()
        config = unet.config
        self.in_channels = int(config.in_channels)
        self.out_channels = int(config.out_channels)
        self.model_channels = int(config.block_out_channels[0])
        self.dtype = next(unet.parameters()).dtype
        self.time_embed = nn.Sequential(unet.time_embedding.linear_1, nn.SiLU(), unet.time_embedding.linear_2)
        self.num_classes: str | None = None
        self.adm_in_channels: int | None = None
        if getattr(unet, "add_embedding", None) is not None:  # SDXL: pooled text + size/crop ids
            add = unet.add_embedding
            self.num_classes = "sequential"
            self.adm_in_channels = int(add.linear_1.in_features)
            self.label_emb = nn.Sequential(nn.Sequential(add.linear_1, nn.SiLU(), add.linear_2))
            self.addition_time_embed_dim = int(config.addition_time_embed_dim)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(unet.conv_in)])
        for down in unet.down_blocks:
            attentions = getattr(down, "attentions", None) or [None] * len(down.resnets)
            for resnet, transformer in zip(down.resnets, attentions, strict=True):
                self.input_blocks.append(self._level(resnet, transformer))
            for downsampler in down.downsamplers or []:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(downsampler)))
        mid = unet.mid_block
        self.middle_block = TimestepEmbedSequential(
            self.resblock_class(mid.resnets[0]),
            self.transformer_class(mid.attentions[0]),
            self.resblock_class(mid.resnets[1]),
        )
        self.output_blocks = nn.ModuleList()
        for up in unet.up_blocks:
            attentions = getattr(up, "attentions", None) or [None] * len(up.resnets)
            count = len(up.resnets)
            for j, (resnet, transformer) in enumerate(zip(up.resnets, attentions, strict=True)):
                block = self._level(resnet, transformer)
                if j == count - 1:
                    for upsampler in up.upsamplers or []:
                        block.append(Upsample(upsampler))
                self.output_blocks.append(block)
        self.out = nn.Sequential(unet.conv_norm_out, nn.SiLU(), unet.conv_out)

    def _level(self, resnet: Any, transformer: Any) -> TimestepEmbedSequential:
        layers: list[nn.Module] = [self.resblock_class(resnet)]
        if transformer is not None:
            layers.append(self.transformer_class(transformer))
        return TimestepEmbedSequential(*layers)

    def size_vector(self, pooled: torch.Tensor, time_ids: torch.Tensor) -> torch.Tensor:
        """SDXL's `y`: pooled text embedding + 256-dim embeddings of the size/crop ids (sgm's
        vector conditioning; the same ops as diffusers' add_time_proj path)."""
        ids = timestep_embedding(time_ids.flatten(), self.addition_time_embed_dim)
        return torch.concat([pooled, ids.reshape(pooled.shape[0], -1)], dim=-1)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | None = None,
        context: Any = None,
        y: torch.Tensor | None = None,
        control: list[torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """`control`: ControlNet residuals as cldm's ControlledUnetModel takes them (one per input
        block, then the middle block's; popped from the end), added to the skip connections."""
        assert timesteps is not None, "UNetModel needs timesteps"
        if timesteps.ndim == 0:
            timesteps = timesteps[None]
        timesteps = timesteps.to(x.device).expand(x.shape[0])
        t_emb = timestep_embedding(timesteps, self.model_channels, repeat_only=False).to(x.dtype)
        emb = self.time_embed(t_emb)
        if self.num_classes is not None:
            assert y is not None, "SDXL's UNet needs y (the vector conditioning)"
            emb = emb + self.label_emb(y.to(emb.dtype))
        hs: list[torch.Tensor] = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        control = list(control) if control is not None else None
        if control:
            h = h + control.pop().to(h.dtype)
        for module in self.output_blocks:
            skip = hs.pop()
            if control:
                skip = skip + control.pop().to(skip.dtype)
            h = torch.cat([h, skip], dim=1)
            h = module(h, emb, context, _upsample_shape(h, hs))
        return self.out(h)


def _upsample_shape(h: torch.Tensor, hs: list[torch.Tensor]) -> Any:
    """The next skip's size when it is not exactly twice h, as diffusers does: odd latent sizes, and
    latents so small (1x1) that a downsample kept their size, where upsampling must keep it too."""
    if not hs:
        return None
    target = hs[-1].shape[-2:]
    if target[0] == h.shape[-2] * 2 and target[1] == h.shape[-1] * 2:
        return None
    return target  # only an Upsample layer reads it
