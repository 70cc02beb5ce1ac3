"""Where things live on disk, derived once from the command line.

A1111 rule kept: --data-dir moves config.json, styles.csv, extensions/, models/ and outputs/
under it; the specific *-dir flags still win over it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Sub-folders of models/ that exist in a fresh install (A1111 names).
MODEL_SUBDIRS = (
    "Stable-diffusion",
    "VAE",
    "Lora",
    "LyCORIS",
    "embeddings",
    "hypernetworks",
    "ESRGAN",
    "RealESRGAN",
    "SwinIR",
    "GFPGAN",
    "Codeformer",
    "VAE-approx",
)


@dataclass(frozen=True)
class Paths:
    """All folders and files the application reads or writes."""

    data_dir: Path
    models_dir: Path
    ckpt_dir: Path
    vae_dir: Path
    lora_dir: Path
    lyco_dir: Path
    embeddings_dir: Path
    hypernetwork_dir: Path
    esrgan_dir: Path
    realesrgan_dir: Path
    swinir_dir: Path
    gfpgan_dir: Path
    codeformer_dir: Path
    vae_approx_dir: Path
    outputs_dir: Path
    extensions_dir: Path
    config_file: Path
    ui_config_file: Path
    styles_files: tuple[Path, ...]
    cache_dir: Path
    extra_ckpt_files: tuple[Path, ...] = field(default=())

    @property
    def hash_cache_file(self) -> Path:
        return self.cache_dir / "hashes.json"

    @property
    def params_file(self) -> Path:
        return self.data_dir / "params.txt"

    def ensure(self) -> None:
        """Create the folders a fresh install needs (called by the composition root, not at import)."""
        for folder in (
            self.ckpt_dir,
            self.vae_dir,
            self.lora_dir,
            self.lyco_dir,
            self.embeddings_dir,
            self.hypernetwork_dir,
            self.esrgan_dir,
            self.realesrgan_dir,
            self.swinir_dir,
            self.gfpgan_dir,
            self.codeformer_dir,
            self.vae_approx_dir,
            self.outputs_dir,
            self.extensions_dir,
            self.cache_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Paths:
        data_dir = Path(args.data_dir).resolve() if args.data_dir else REPO_ROOT
        models_dir = Path(args.models_dir).resolve() if getattr(args, "models_dir", None) else data_dir / "models"

        def pick(flag: str, default: Path) -> Path:
            value = getattr(args, flag, None)
            return Path(value).resolve() if value else default

        styles = tuple(Path(s) for s in (args.styles_file or [])) or (data_dir / "styles.csv",)
        extra = (Path(args.ckpt).resolve(),) if getattr(args, "ckpt", None) else ()
        return cls(
            data_dir=data_dir,
            models_dir=models_dir,
            ckpt_dir=pick("ckpt_dir", models_dir / "Stable-diffusion"),
            vae_dir=pick("vae_dir", models_dir / "VAE"),
            lora_dir=pick("lora_dir", models_dir / "Lora"),
            lyco_dir=pick("lyco_dir_backcompat", models_dir / "LyCORIS"),
            embeddings_dir=pick("embeddings_dir", models_dir / "embeddings"),
            hypernetwork_dir=pick("hypernetwork_dir", models_dir / "hypernetworks"),
            esrgan_dir=pick("esrgan_models_path", models_dir / "ESRGAN"),
            realesrgan_dir=pick("realesrgan_models_path", models_dir / "RealESRGAN"),
            swinir_dir=pick("swinir_models_path", models_dir / "SwinIR"),
            gfpgan_dir=pick("gfpgan_models_path", models_dir / "GFPGAN"),
            codeformer_dir=pick("codeformer_models_path", models_dir / "Codeformer"),
            vae_approx_dir=models_dir / "VAE-approx",
            outputs_dir=data_dir / "outputs",
            extensions_dir=data_dir / "extensions",
            config_file=pick("ui_settings_file", data_dir / "config.json"),
            ui_config_file=pick("ui_config_file", data_dir / "ui-config.json"),
            styles_files=tuple(p if p.is_absolute() else data_dir / p for p in styles),
            cache_dir=data_dir / "cache",
            extra_ckpt_files=extra,
        )
