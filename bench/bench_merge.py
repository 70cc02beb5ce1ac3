"""Benchmark: streaming checkpoint merge vs. a load-everything baseline, on SD1.5-sized files.

Creates two random fp16 checkpoints with SD1.5's real key names and shapes (UNet, VAE, CLIP text
encoder in A1111's layout, ~2.1 GB each) in bench/.cache/ (reused when present), then runs each
method in its own subprocess and records wall time and peak RSS (VmHWM). Both methods write a
Weighted sum (M = 0.3) to safetensors and fsync it. Output: JSON on stdout and
bench/results/merge.json.

    ./venv/bin/python bench/bench_merge.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from modules.merger.safetensors_stream import SafetensorsStreamWriter, TensorSpec  # noqa: E402

CACHE = REPO_ROOT / "bench" / ".cache"
RESULTS = REPO_ROOT / "bench" / "results" / "merge.json"
MULTIPLIER = 0.3
Shape = tuple[int, ...]


def _unet_resblock(p: str, cin: int, cout: int) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {
        f"{p}.in_layers.0.weight": (cin,),
        f"{p}.in_layers.0.bias": (cin,),
        f"{p}.in_layers.2.weight": (cout, cin, 3, 3),
        f"{p}.in_layers.2.bias": (cout,),
        f"{p}.emb_layers.1.weight": (cout, 1280),
        f"{p}.emb_layers.1.bias": (cout,),
        f"{p}.out_layers.0.weight": (cout,),
        f"{p}.out_layers.0.bias": (cout,),
        f"{p}.out_layers.3.weight": (cout, cout, 3, 3),
        f"{p}.out_layers.3.bias": (cout,),
    }
    if cin != cout:
        shapes |= {f"{p}.skip_connection.weight": (cout, cin, 1, 1), f"{p}.skip_connection.bias": (cout,)}
    return shapes


def _unet_transformer(p: str, ch: int, context: int = 768) -> dict[str, Shape]:
    t = f"{p}.transformer_blocks.0"
    shapes: dict[str, Shape] = {
        f"{p}.norm.weight": (ch,),
        f"{p}.norm.bias": (ch,),
        f"{p}.proj_in.weight": (ch, ch, 1, 1),
        f"{p}.proj_in.bias": (ch,),
        f"{t}.ff.net.0.proj.weight": (ch * 8, ch),
        f"{t}.ff.net.0.proj.bias": (ch * 8,),
        f"{t}.ff.net.2.weight": (ch, ch * 4),
        f"{t}.ff.net.2.bias": (ch,),
        f"{p}.proj_out.weight": (ch, ch, 1, 1),
        f"{p}.proj_out.bias": (ch,),
    }
    for attn, kv in (("attn1", ch), ("attn2", context)):
        shapes |= {
            f"{t}.{attn}.to_q.weight": (ch, ch),
            f"{t}.{attn}.to_k.weight": (ch, kv),
            f"{t}.{attn}.to_v.weight": (ch, kv),
            f"{t}.{attn}.to_out.0.weight": (ch, ch),
            f"{t}.{attn}.to_out.0.bias": (ch,),
        }
    for norm in ("norm1", "norm2", "norm3"):
        shapes |= {f"{t}.{norm}.weight": (ch,), f"{t}.{norm}.bias": (ch,)}
    return shapes


def sd15_unet() -> dict[str, Shape]:
    """model.diffusion_model.* of SD1.5 (LDM layout): 4 levels 320/640/1280/1280, attention on 3."""
    p = "model.diffusion_model"
    shapes: dict[str, Shape] = {
        f"{p}.time_embed.0.weight": (1280, 320),
        f"{p}.time_embed.0.bias": (1280,),
        f"{p}.time_embed.2.weight": (1280, 1280),
        f"{p}.time_embed.2.bias": (1280,),
        f"{p}.input_blocks.0.0.weight": (320, 4, 3, 3),
        f"{p}.input_blocks.0.0.bias": (320,),
    }
    widths, skips, ch, block = (320, 640, 1280, 1280), [320], 320, 1
    for level, width in enumerate(widths):
        for _ in range(2):
            shapes |= _unet_resblock(f"{p}.input_blocks.{block}.0", ch, width)
            ch = width
            if level < 3:
                shapes |= _unet_transformer(f"{p}.input_blocks.{block}.1", ch)
            skips.append(ch)
            block += 1
        if level < 3:
            shapes |= {
                f"{p}.input_blocks.{block}.0.op.weight": (ch, ch, 3, 3),
                f"{p}.input_blocks.{block}.0.op.bias": (ch,),
            }
            skips.append(ch)
            block += 1
    shapes |= _unet_resblock(f"{p}.middle_block.0", ch, ch)
    shapes |= _unet_transformer(f"{p}.middle_block.1", ch)
    shapes |= _unet_resblock(f"{p}.middle_block.2", ch, ch)
    block = 0
    for level, width in reversed(list(enumerate(widths))):
        for i in range(3):
            shapes |= _unet_resblock(f"{p}.output_blocks.{block}.0", ch + skips.pop(), width)
            ch = width
            part = 1
            if level < 3:
                shapes |= _unet_transformer(f"{p}.output_blocks.{block}.1", ch)
                part = 2
            if level > 0 and i == 2:
                conv = f"{p}.output_blocks.{block}.{part}.conv"
                shapes |= {f"{conv}.weight": (ch, ch, 3, 3), f"{conv}.bias": (ch,)}
            block += 1
    return shapes | {
        f"{p}.out.0.weight": (320,),
        f"{p}.out.0.bias": (320,),
        f"{p}.out.2.weight": (4, 320, 3, 3),
        f"{p}.out.2.bias": (4,),
    }


def _vae_resblock(p: str, cin: int, cout: int) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {
        f"{p}.norm1.weight": (cin,),
        f"{p}.norm1.bias": (cin,),
        f"{p}.conv1.weight": (cout, cin, 3, 3),
        f"{p}.conv1.bias": (cout,),
        f"{p}.norm2.weight": (cout,),
        f"{p}.norm2.bias": (cout,),
        f"{p}.conv2.weight": (cout, cout, 3, 3),
        f"{p}.conv2.bias": (cout,),
    }
    if cin != cout:
        shapes |= {f"{p}.nin_shortcut.weight": (cout, cin, 1, 1), f"{p}.nin_shortcut.bias": (cout,)}
    return shapes


def _vae_mid(p: str, ch: int = 512) -> dict[str, Shape]:
    shapes = _vae_resblock(f"{p}.block_1", ch, ch) | _vae_resblock(f"{p}.block_2", ch, ch)
    shapes |= {f"{p}.attn_1.norm.weight": (ch,), f"{p}.attn_1.norm.bias": (ch,)}
    for name in ("q", "k", "v", "proj_out"):
        shapes |= {f"{p}.attn_1.{name}.weight": (ch, ch, 1, 1), f"{p}.attn_1.{name}.bias": (ch,)}
    return shapes


def sd15_vae() -> dict[str, Shape]:
    p, widths = "first_stage_model", (128, 256, 512, 512)
    shapes: dict[str, Shape] = {f"{p}.encoder.conv_in.weight": (128, 3, 3, 3), f"{p}.encoder.conv_in.bias": (128,)}
    ch = 128
    for level, width in enumerate(widths):
        for i in range(2):
            shapes |= _vae_resblock(f"{p}.encoder.down.{level}.block.{i}", ch, width)
            ch = width
        if level < 3:
            conv = f"{p}.encoder.down.{level}.downsample.conv"
            shapes |= {f"{conv}.weight": (ch, ch, 3, 3), f"{conv}.bias": (ch,)}
    shapes |= _vae_mid(f"{p}.encoder.mid")
    shapes |= {
        f"{p}.encoder.norm_out.weight": (512,),
        f"{p}.encoder.norm_out.bias": (512,),
        f"{p}.encoder.conv_out.weight": (8, 512, 3, 3),
        f"{p}.encoder.conv_out.bias": (8,),
        f"{p}.quant_conv.weight": (8, 8, 1, 1),
        f"{p}.quant_conv.bias": (8,),
        f"{p}.post_quant_conv.weight": (4, 4, 1, 1),
        f"{p}.post_quant_conv.bias": (4,),
        f"{p}.decoder.conv_in.weight": (512, 4, 3, 3),
        f"{p}.decoder.conv_in.bias": (512,),
    }
    shapes |= _vae_mid(f"{p}.decoder.mid")
    for level in reversed(range(4)):
        for i in range(3):
            shapes |= _vae_resblock(f"{p}.decoder.up.{level}.block.{i}", ch, widths[level])
            ch = widths[level]
        if level > 0:
            conv = f"{p}.decoder.up.{level}.upsample.conv"
            shapes |= {f"{conv}.weight": (ch, ch, 3, 3), f"{conv}.bias": (ch,)}
    return shapes | {
        f"{p}.decoder.norm_out.weight": (128,),
        f"{p}.decoder.norm_out.bias": (128,),
        f"{p}.decoder.conv_out.weight": (3, 128, 3, 3),
        f"{p}.decoder.conv_out.bias": (3,),
    }


def sd15_text_encoder() -> dict[str, Shape]:
    p = "cond_stage_model.transformer.text_model"
    shapes: dict[str, Shape] = {
        f"{p}.embeddings.token_embedding.weight": (49408, 768),
        f"{p}.embeddings.position_embedding.weight": (77, 768),
    }
    for i in range(12):
        layer = f"{p}.encoder.layers.{i}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            shapes |= {f"{layer}.self_attn.{proj}.weight": (768, 768), f"{layer}.self_attn.{proj}.bias": (768,)}
        shapes |= {
            f"{layer}.layer_norm1.weight": (768,),
            f"{layer}.layer_norm1.bias": (768,),
            f"{layer}.mlp.fc1.weight": (3072, 768),
            f"{layer}.mlp.fc1.bias": (3072,),
            f"{layer}.mlp.fc2.weight": (768, 3072),
            f"{layer}.mlp.fc2.bias": (768,),
            f"{layer}.layer_norm2.weight": (768,),
            f"{layer}.layer_norm2.bias": (768,),
        }
    return shapes | {f"{p}.final_layer_norm.weight": (768,), f"{p}.final_layer_norm.bias": (768,)}


SCHEDULE_BUFFERS = [
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
]


def sd15_specs() -> list[TensorSpec]:
    specs = [TensorSpec(name, torch.float32, (1000,)) for name in SCHEDULE_BUFFERS]
    for part in (sd15_unet(), sd15_vae(), sd15_text_encoder()):
        specs += [TensorSpec(name, torch.float16, shape) for name, shape in part.items()]
    position_ids = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    return [*specs, TensorSpec(position_ids, torch.int64, (1, 77))]


def make_checkpoint(path: Path, seed: int) -> None:
    specs = sd15_specs()
    expected = sum(s.nbytes for s in specs)
    if path.exists() and path.stat().st_size > expected:
        return
    path.unlink(missing_ok=True)
    g = torch.Generator().manual_seed(seed)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with SafetensorsStreamWriter(partial, specs, {"format": "pt"}) as writer:
        for spec in specs:
            if spec.dtype == torch.int64:
                writer.write(spec.name, torch.arange(77).unsqueeze(0))
            else:
                writer.write(spec.name, (torch.randn(spec.shape, generator=g) * 0.02).to(spec.dtype))
    partial.rename(path)


def run_streaming(a: Path, b: Path, out: Path) -> None:
    from modules.merger import MergeRequest, merge_checkpoints

    request = MergeRequest(
        primary_model_name=a,
        secondary_model_name=b,
        multiplier=MULTIPLIER,
        output_dir=out.parent,
        custom_name=out.stem,
        save_metadata=False,
    )
    merge_checkpoints(request)


def run_baseline(a: Path, b: Path, out: Path) -> None:
    """What A1111 does: both state dicts fully in memory, merged in place, saved in one call."""
    from safetensors.torch import load_file, save_file

    theta_1 = load_file(str(b))
    theta_0 = load_file(str(a))
    for key in theta_0:
        if "model" in key and key in theta_1:
            theta_0[key] = (1 - MULTIPLIER) * theta_0[key] + MULTIPLIER * theta_1[key]
    save_file(theta_0, str(out), metadata={"format": "pt"})
    with out.open("rb+") as f:
        os.fsync(f.fileno())  # the streaming writer fsyncs too


def child(method: str, a: Path, b: Path, out: Path) -> None:
    torch.set_num_threads(2)
    start = time.perf_counter()
    {"streaming": run_streaming, "baseline": run_baseline}[method](a, b, out)
    elapsed = time.perf_counter() - start
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"merge_s": round(elapsed, 2), "peak_rss_bytes": hwm}))


def measure(method: str, a: Path, b: Path) -> dict[str, float]:
    out = CACHE / f"merged-{method}.safetensors"
    out.unlink(missing_ok=True)
    for path in (a, b):  # same warm page cache for every run
        with path.open("rb") as f:
            while f.read(1 << 24):
                pass
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", method, str(a), str(b), str(out)], stdout=subprocess.PIPE, text=True
    )
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{method} run failed with exit code {proc.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    size = out.stat().st_size
    out.unlink()
    return {
        "process_wall_s": round(wall, 2),
        "merge_s": result["merge_s"],
        "peak_rss_mib": round(result["peak_rss_bytes"] / 2**20),
        "output_bytes": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "A", "B", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help="runs per method, interleaved (fastest one reported)")
    args = parser.parse_args()
    if args.child:
        method, a, b, out = args.child
        child(method, Path(a), Path(b), Path(out))
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    a, b = CACHE / "sd15-random-a.safetensors", CACHE / "sd15-random-b.safetensors"
    start = time.perf_counter()
    make_checkpoint(a, 1)
    make_checkpoint(b, 2)
    specs = sd15_specs()
    report: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": 2, "python": platform.python_version()},
        "inputs": {
            "tensors": len(specs),
            "parameters": sum(s.nbytes // s.dtype.itemsize for s in specs),
            "file_bytes": a.stat().st_size,
            "generate_s": round(time.perf_counter() - start, 1),
        },
    }
    runs: dict[str, list[dict[str, float]]] = {"streaming": [], "baseline": []}
    for _ in range(args.repeat):  # interleaved, so load from other processes hits both alike
        for method, results in runs.items():
            results.append(measure(method, a, b))
    for method, results in runs.items():
        report[method] = min(results, key=lambda r: r["merge_s"]) | {"runs": results}
    streaming, baseline = report["streaming"], report["baseline"]
    assert isinstance(streaming, dict) and isinstance(baseline, dict)
    report["streaming_vs_baseline"] = {
        "time_ratio": round(streaming["merge_s"] / baseline["merge_s"], 3),
        "peak_rss_ratio": round(streaming["peak_rss_mib"] / baseline["peak_rss_mib"], 3),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
