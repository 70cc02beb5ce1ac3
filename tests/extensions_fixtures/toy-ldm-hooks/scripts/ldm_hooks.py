"""Hooks the ldm-shaped model the ways real A1111 extensions do; what it saw goes to p.ldm_probe.

Mode (the script argument):
  vae-manual    Tiled VAE's pattern: p.sd_model.first_stage_model.decoder.forward replaced by an
                object that runs the decoder from ldm's parts (conv_in, mid.block_1/attn_1/block_2
                with norm1/conv1/nin_shortcut and q/k/v/proj_out as 1x1 convs, up[i].block/upsample,
                norm_out, conv_out); restored in postprocess
  attn-manual   Regional Prompter's pattern: every CrossAttention named ...attn2 in
                shared.sd_model.model.diffusion_model gets its own forward computing attention
                from to_q/to_k/to_v/heads/scale/to_out; restored in postprocess
  attn-left     the same, with the cross-attention output zeroed on the left half of the image
  apply-model   Mixture of Diffusers' pattern: shared.sd_model.apply_model replaced by a function
                that runs the original on two overlapping horizontal tiles and blends them
"""

import gradio as gr
import torch

from ldm.modules.attention import CrossAttention
from ldm.modules.diffusionmodules.model import AttnBlock
from modules import scripts, shared


def _resnet(block, h):
    x = h
    h = block.conv1(torch.nn.functional.silu(block.norm1(h)))
    h = block.conv2(torch.nn.functional.silu(block.norm2(h)))
    if block.in_channels != block.out_channels:
        x = block.nin_shortcut(x)
    return x + h


def _attn_block(block, h):
    assert isinstance(block, AttnBlock)
    x = h
    h = block.norm(h)
    q, k, v = block.q(h), block.k(h), block.v(h)
    b, c, hh, ww = q.shape
    q = q.reshape(b, c, hh * ww).permute(0, 2, 1)
    w_ = torch.softmax(torch.bmm(q, k.reshape(b, c, hh * ww)) * (int(c) ** (-0.5)), dim=2)
    h = torch.bmm(v.reshape(b, c, hh * ww), w_.permute(0, 2, 1)).reshape(b, c, hh, ww)
    return x + block.proj_out(h)


class ManualDecoder:
    def __init__(self, decoder, probe):
        self.net = decoder
        self.probe = probe

    def __call__(self, z):
        net = self.net
        self.probe["decoder_calls"] = self.probe.get("decoder_calls", 0) + 1
        h = net.conv_in(z)
        h = _resnet(net.mid.block_1, h)
        h = _attn_block(net.mid.attn_1, h)
        h = _resnet(net.mid.block_2, h)
        for i_level in reversed(range(len(net.up))):
            for block in net.up[i_level].block:
                h = _resnet(block, h)
            if i_level != 0:
                h = net.up[i_level].upsample(h)
        return net.conv_out(torch.nn.functional.silu(net.norm_out(h)))


def attention_forward(module, probe, zero_left):
    def forward(x, context=None, mask=None, **kwargs):
        probe["attn_calls"] = probe.get("attn_calls", 0) + 1
        context = x if context is None else context
        q, k, v = module.to_q(x), module.to_k(context), module.to_v(context)
        b, n, _ = q.shape
        heads = module.heads
        q, k, v = (t.reshape(b, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) * module.scale, dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", weights, v).transpose(1, 2).reshape(b, n, -1)
        if zero_left:
            side = int(round(n**0.5))  # square images only
            grid = out.reshape(b, side, side, -1)
            grid[:, :, : side // 2] = 0
        return module.to_out(out)

    return forward


class LdmHooks(scripts.Script):
    def title(self):
        return "LDM hooks"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Textbox("", label="Mode")]

    def process(self, p, mode):
        p.ldm_probe = probe = {}
        self.undo = []
        if mode == "vae-manual":
            decoder = p.sd_model.first_stage_model.decoder
            decoder.original_forward = decoder.forward
            decoder.forward = ManualDecoder(decoder, probe)
            self.undo.append(lambda: (delattr(decoder, "forward"), delattr(decoder, "original_forward")))
        elif mode in ("attn-manual", "attn-left"):
            unet = shared.sd_model.model.diffusion_model
            for name, module in unet.named_modules():
                if isinstance(module, CrossAttention) and name.endswith("attn2"):
                    module.forward = attention_forward(module, probe, mode == "attn-left")
                    self.undo.append(lambda m=module: delattr(m, "forward"))
        elif mode == "apply-model":
            original = shared.sd_model.apply_model

            def tiled(x, t, cond):
                probe.setdefault("cond_keys", set()).update(cond)
                w = x.shape[-1]
                left, right = original(x[..., : w * 3 // 4], t, cond), original(x[..., w // 4 :], t, cond)
                out = torch.zeros_like(x)
                count = torch.zeros_like(x)
                out[..., : w * 3 // 4] += left
                count[..., : w * 3 // 4] += 1
                out[..., w // 4 :] += right
                count[..., w // 4 :] += 1
                return out / count

            shared.sd_model.apply_model = tiled
            self.undo.append(lambda: delattr(shared.sd_model, "apply_model"))

    def postprocess(self, p, processed, mode):
        for undo in reversed(getattr(self, "undo", [])):
            undo()
        self.undo = []
