"""Create a new embedding or hypernetwork file (A1111 create_embedding / create_hypernetwork).

Embedding: `num_vectors_per_token` vectors, initialised from the token embeddings of the
initialization text (vector i copies token i * tokens // vectors; the text is cut to that many
tokens); an empty text gives zeros. SDXL embeddings get CLIP-L and CLIP-G parts.
Hypernetwork: a pair of modules (keys, values) for each enabled width, A1111's layer order and
weight initialisation (Normal: weights N(0, 0.01), biases 0; LayerNorm weights always N(0, 0.01)).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import torch

from modules.models.manager import LoadedModel
from modules.networks.embeddings import encoder_keys
from modules.networks.hypernetworks import HypernetworkStructure, UnsupportedHypernetwork, activation_classes
from modules.train.context import TrainingContext
from modules.train.errors import TrainingError
from modules.train.files import (
    EmbeddingMeta,
    HypernetworkHeader,
    embedding_suffix,
    sanitize_name,
    save_embedding,
    save_hypernetwork,
)
from modules.train.requests import CreateEmbeddingRequest, CreateHypernetworkRequest, CreateResult

Tensor = torch.Tensor
HypernetworkModules = dict[int, tuple[torch.nn.Sequential, torch.nn.Sequential]]


# --------------------------------------------------------------------------------------------
# embeddings


def embedding_init_vectors(model: LoadedModel, init_text: str, count: int) -> Tensor | dict[str, Tensor]:
    """Initial vectors: one tensor for single-encoder models, {"clip_l", "clip_g"} for SDXL."""
    if count < 1:
        raise TrainingError("an embedding needs at least one vector per token")
    tokenizer = model.tokenizers[0]
    ids = tokenizer(init_text or "*", truncation=False, add_special_tokens=False)["input_ids"][:count]
    if init_text and not ids:
        raise TrainingError(f"initialization text {init_text!r} gives no tokens")
    keys = encoder_keys(model.family)
    parts: dict[str, Tensor] = {}
    for key, encoder in zip(keys, model.text_encoders, strict=True):
        table = encoder.get_input_embeddings().weight
        vectors = torch.zeros(count, int(table.shape[1]))
        if init_text:
            embedded = table.detach()[torch.tensor(ids, device=table.device)].to("cpu", torch.float32)
            for i in range(count):
                vectors[i] = embedded[i * len(ids) // count]
        parts[key] = vectors
    return parts if len(parts) > 1 else next(iter(parts.values()))


def create_embedding_file(req: CreateEmbeddingRequest, model: LoadedModel, embeddings_dir: Path) -> CreateResult:
    name = sanitize_name(req.name, "embedding name")
    vectors = embedding_init_vectors(model, req.init_text, req.num_vectors_per_token)
    path = Path(embeddings_dir) / f"{name}{embedding_suffix(vectors)}"
    if path.exists() and not req.overwrite_old:
        raise TrainingError(f"file {path} already exists (tick 'Overwrite Old Embedding' to replace it)")
    save_embedding(path, vectors, EmbeddingMeta(name=name, step=0))
    return CreateResult("embedding", name, path)


def create_embedding(req: CreateEmbeddingRequest, ctx: TrainingContext) -> CreateResult:
    """A new embedding in the embeddings folder, shaped for the selected (or requested) model."""
    sanitize_name(req.name, "embedding name")  # fail before loading a model
    model = ctx.model(req.checkpoint)
    with ctx.models.use(model):
        return create_embedding_file(req, model, ctx.paths.embeddings_dir)


# --------------------------------------------------------------------------------------------
# hypernetworks


def check_structure(layer_structure: list[float], dropout: list[float]) -> None:
    if len(layer_structure) < 2 or layer_structure[0] != 1 or layer_structure[-1] != 1:
        raise TrainingError(f"layer structure {layer_structure} must start and end with 1, e.g. 1, 2, 1")
    if any(v <= 0 for v in layer_structure):
        raise TrainingError(f"layer structure {layer_structure} must hold positive numbers")
    if len(dropout) != len(layer_structure):
        raise TrainingError(
            f"dropout structure {dropout} must have as many entries as the layer structure {layer_structure}"
        )
    if any(not 0 <= v < 1 for v in dropout) or dropout[0] != 0 or dropout[-1] != 0:
        raise TrainingError(f"dropout structure {dropout} needs values in [0, 1), starting and ending with 0")


def _init_layer(
    layer: torch.nn.Linear | torch.nn.LayerNorm, weight_init: str, activation: str | None, generator: torch.Generator
) -> None:
    weight: Tensor = layer.weight.data
    bias: Tensor = layer.bias.data
    nonlinearity: Literal["leaky_relu", "relu"] = "leaky_relu" if activation == "leakyrelu" else "relu"
    if weight_init == "Normal" or isinstance(layer, torch.nn.LayerNorm):
        torch.nn.init.normal_(weight, 0.0, 0.01, generator=generator)
    elif weight_init == "XavierUniform":
        torch.nn.init.xavier_uniform_(weight, generator=generator)
    elif weight_init == "XavierNormal":
        torch.nn.init.xavier_normal_(weight, generator=generator)
    elif weight_init == "KaimingUniform":
        torch.nn.init.kaiming_uniform_(weight, nonlinearity=nonlinearity, generator=generator)
    elif weight_init == "KaimingNormal":
        torch.nn.init.kaiming_normal_(weight, nonlinearity=nonlinearity, generator=generator)
    else:
        raise TrainingError(f"unknown weight initialization {weight_init!r}")
    torch.nn.init.zeros_(bias)


def structure_of(header: HypernetworkHeader) -> HypernetworkStructure:
    return HypernetworkStructure(
        layer_structure=tuple(header.layer_structure),
        activation_func=header.activation_func,
        add_layer_norm=header.is_layer_norm,
        activate_output=header.activate_output,
        dropout=tuple(header.dropout_structure),
    )


def new_hypernetwork_modules(header: HypernetworkHeader, sizes: list[int], seed: int) -> HypernetworkModules:
    structure = structure_of(header)
    generator = torch.Generator().manual_seed(seed)
    modules: HypernetworkModules = {}
    for size in sizes:
        pair = []
        for _ in range(2):
            try:
                sequential = structure.build(size)
            except UnsupportedHypernetwork as exc:
                raise TrainingError(str(exc)) from None
            for layer in sequential:
                if isinstance(layer, torch.nn.Linear | torch.nn.LayerNorm):
                    _init_layer(layer, header.weight_initialization, header.activation_func, generator)
            pair.append(sequential)
        modules[size] = (pair[0], pair[1])
    return modules


def create_hypernetwork(req: CreateHypernetworkRequest, ctx: TrainingContext) -> CreateResult:
    return create_hypernetwork_file(req, ctx.paths.hypernetwork_dir)


def create_hypernetwork_file(req: CreateHypernetworkRequest, hypernetwork_dir: Path) -> CreateResult:
    name = sanitize_name(req.name, "hypernetwork name")
    if name == "None":
        raise TrainingError("'None' is reserved: it means 'no hypernetwork'")
    path = Path(hypernetwork_dir) / f"{name}.pt"
    if path.exists() and not req.overwrite_old:
        raise TrainingError(f"file {path} already exists (tick 'Overwrite Old Hypernetwork' to replace it)")
    activation = req.activation_func or "linear"
    if activation != "linear" and activation not in activation_classes():
        known = ", ".join(["linear", *sorted(k for k in activation_classes() if k != "linear")])
        raise TrainingError(f"unknown activation function {activation!r}; known: {known}")
    layers = list(req.layer_structure)
    dropout = list(req.dropout_structure) if req.use_dropout else [0.0] * len(layers)
    check_structure(layers, dropout)
    header = HypernetworkHeader(
        name=name,
        layer_structure=layers,
        activation_func=activation,
        is_layer_norm=req.add_layer_norm,
        weight_initialization=req.weight_init,
        use_dropout=req.use_dropout,
        dropout_structure=dropout,
        activate_output=False,
        step=0,
    )
    seed = req.seed if req.seed >= 0 else random.randrange(2**32)
    modules = new_hypernetwork_modules(header, list(req.enable_sizes), seed)
    save_hypernetwork(path, modules, header)
    return CreateResult("hypernetwork", name, path)
