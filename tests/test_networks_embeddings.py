"""Textual-inversion embeddings: every file format, per-family loaded/skipped lists, the conditioning
they produce (only at their token positions, never split across a 75-token chunk), TI hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import safetensors.torch
import torch
from PIL import Image

from modules.core.paths import Paths
from modules.generation.conditioning import TextConditioner
from modules.models.errors import InvalidModelFile
from modules.models.families import ModelFamily
from modules.models.hashes import HashCache
from modules.networks.activation import NetworkActivator
from modules.networks.catalogue import NetworkCatalogue
from modules.networks.embeddings import EmbeddingDatabase, embedding_from_data, read_embedding
from modules.networks.image_embedding import embedding_from_pixels, lcg_stream
from modules.networks.testing import TinyModel, a1111_embedding, save_embedding_image, save_torch
from tests.fixtures_models import models_home
from tools.tiny_models import tiny_pipeline


@pytest.fixture(scope="module")
def sd1(tokenizer_cache: Path) -> TinyModel:
    return TinyModel(ModelFamily.SD1, tiny_pipeline(ModelFamily.SD1, tokenizer_cache, seed=5))


@pytest.fixture(scope="module")
def sdxl(tokenizer_cache: Path) -> TinyModel:
    return TinyModel(ModelFamily.SDXL, tiny_pipeline(ModelFamily.SDXL, tokenizer_cache, seed=6))


@pytest.fixture
def home(tmp_path: Path) -> Paths:
    return models_home(tmp_path)


@pytest.fixture
def activator(home: Paths) -> NetworkActivator:
    return NetworkActivator(NetworkCatalogue(home, HashCache(home.hash_cache_file)))


def vectors(count: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(count, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def files(home: Paths) -> dict[str, torch.Tensor]:
    """One embedding per supported layout in the embeddings folder; returns name -> vectors."""
    folder = home.embeddings_dir
    made = {
        "a1111pt": vectors(2, 32, 1),
        "embparams": vectors(3, 32, 2),
        "concept": vectors(1, 32, 3),
        "textchunk": vectors(2, 32, 4),
        "hiddenpng": vectors(4, 32, 5),
        "hiddenwebp": vectors(1, 32, 6),
    }
    save_torch(folder / "a1111pt.pt", a1111_embedding(made["a1111pt"], name="trained-name", step=50))
    safetensors.torch.save_file({"emb_params": made["embparams"]}, str(folder / "embparams.safetensors"))
    save_torch(folder / "sub" / "concept.bin", {"<concept>": made["concept"][0]})
    xl = {"clip_l": vectors(2, 32, 7), "clip_g": vectors(2, 64, 8)}
    safetensors.torch.save_file(xl, str(folder / "xlemb.safetensors"))
    save_embedding_image(folder / "chunkfile.png", a1111_embedding(made["textchunk"], name="textchunk"), hidden=False)
    save_embedding_image(folder / "hiddenpng.png", a1111_embedding(made["hiddenpng"], name="hiddenpng"), hidden=True)
    save_embedding_image(folder / "w.webp", a1111_embedding(made["hiddenwebp"], name="hiddenwebp"), hidden=True)
    Image.new("RGB", (16, 16), (200, 10, 10)).save(folder / "a1111pt.preview.png")  # a card preview
    Image.new("RGB", (16, 16), (200, 10, 10)).save(folder / "justapicture.png")
    (folder / "empty.pt").write_bytes(b"")
    (folder / "broken.pt").write_bytes(b"not a pickle at all")
    made["xlemb_l"], made["xlemb_g"] = xl["clip_l"], xl["clip_g"]
    return made


def test_every_file_format_reads_with_its_name_and_vectors(home: Paths, files: dict[str, torch.Tensor]) -> None:
    scan = NetworkCatalogue(home, HashCache(home.hash_cache_file)).embeddings()
    by_name = {f.name: f for f in scan.files}
    assert set(by_name) == {"a1111pt", "embparams", "concept", "xlemb", "textchunk", "hiddenpng", "hiddenwebp"}
    for name in ("a1111pt", "embparams", "concept", "textchunk", "hiddenpng", "hiddenwebp"):
        found = by_name[name].vectors
        assert isinstance(found, torch.Tensor) and torch.equal(found, files[name]), name
    xl = by_name["xlemb"].vectors
    assert (
        isinstance(xl, dict)
        and torch.equal(xl["clip_l"], files["xlemb_l"])
        and torch.equal(xl["clip_g"], files["xlemb_g"])
    )
    assert (by_name["a1111pt"].step, by_name["a1111pt"].sd_checkpoint_name) == (50, "model")
    assert scan.cards()["a1111pt"].preview == home.embeddings_dir / "a1111pt.preview.png"
    assert [p.name for p in scan.errors] == ["broken.pt"]
    assert scan.errors[home.embeddings_dir / "broken.pt"].startswith("broken.pt: ")
    expected = hashlib.sha256((home.embeddings_dir / "a1111pt.pt").read_bytes()).hexdigest()
    assert by_name["a1111pt"].sha256 == expected and by_name["a1111pt"].shorthash == expected[:12]


def test_loaded_and_skipped_follow_the_model_family(
    sd1: TinyModel, sdxl: TinyModel, activator: NetworkActivator, files: dict[str, torch.Tensor]
) -> None:
    db1 = activator.embedding_lookup(sd1)
    assert set(db1.loaded) == {"a1111pt", "embparams", "concept", "textchunk", "hiddenpng", "hiddenwebp"}
    assert set(db1.skipped) == {"xlemb"}
    assert "made for SDXL (96-wide vectors); this model needs clip_l 32" in db1.skipped["xlemb"].reason
    listing = db1.api_listing()
    assert listing["loaded"]["a1111pt"] == {
        "step": 50,
        "sd_checkpoint": "0123456789",
        "sd_checkpoint_name": "model",
        "shape": 32,
        "vectors": 2,
    }
    assert listing["skipped"]["xlemb"]["shape"] == 96
    dbxl = activator.embedding_lookup(sdxl)
    assert set(dbxl.loaded) == {"xlemb"}
    assert "this model needs clip_l 32 + clip_g 64" in dbxl.skipped["a1111pt"].reason
    assert activator.embedding_lookup(sd1) is db1  # unchanged folder: same database


def test_bad_embedding_data_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="2 terms; expected one"):
        embedding_from_data(
            {"string_to_param": {"*": torch.zeros(1, 4), "x": torch.zeros(1, 4)}}, "e", tmp_path / "e.pt"
        )
    with pytest.raises(InvalidModelFile, match="neither a textual-inversion embedding"):
        embedding_from_data({"step": 3}, "e", tmp_path / "e.pt")
    with pytest.raises(InvalidModelFile, match=r"vectors must be \[n, dim\]"):
        embedding_from_data({"emb_params": torch.zeros(1, 2, 3)}, "e", tmp_path / "e.safetensors")
    assert read_embedding(tmp_path / "notes.txt") is None


def test_lcg_matches_a1111_reference_values() -> None:
    stream = lcg_stream(100_100)
    assert stream[:12].tolist() == [253, 242, 127, 44, 157, 27, 239, 133, 38, 79, 167, 4]
    assert int(stream[100:].astype("int64").sum()) == 12731374


def test_hidden_pixel_data_round_trips_and_needs_both_blocks(tmp_path: Path) -> None:
    data = a1111_embedding(vectors(3, 16, 9), name="pix")
    path = save_embedding_image(tmp_path / "p.png", data, hidden=True)
    with Image.open(path) as image:
        found = embedding_from_pixels(image)
        assert found is not None and found["name"] == "pix"
        assert torch.equal(found["string_to_param"]["*"].float(), data["string_to_param"]["*"])
        assert embedding_from_pixels(image.crop((30, 0, 60, 40))) is None  # data blocks cut off


# --- conditioning ---------------------------------------------------------------------------


def embeddings_layer_outputs(model: TinyModel, conditioner: TextConditioner, prompt: str) -> list[torch.Tensor]:
    """The text encoder's input embeddings (token + position) for each chunk of `prompt`."""
    seen: list[torch.Tensor] = []
    layer = model.text_encoders[0].get_submodule("embeddings")
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        conditioner.encode([prompt])
    finally:
        handle.remove()
    return seen


def test_embedding_changes_the_conditioning_only_at_its_token_positions(
    sd1: TinyModel, files: dict[str, torch.Tensor], activator: NetworkActivator
) -> None:
    db = activator.embedding_lookup(sd1)
    with_ti = TextConditioner(sd1.tokenizers, sd1.text_encoders, embeddings=db)
    without = TextConditioner(sd1.tokenizers, sd1.text_encoders, embeddings=None)
    prompt = "a photo of hiddenpng on a table"
    chunk = with_ti.chunker.tokenize_prompt(prompt).chunks[0]
    (fix,) = chunk.fixes
    position, count = fix.position, 4
    assert fix.embedding.name == "hiddenpng" and position == 4  # BOS, a, photo, of
    encoder = sd1.text_encoders[0]
    ids = torch.tensor([chunk.tokens])
    token_rows = encoder.get_input_embeddings()(ids)[0].detach().clone()
    token_rows[position : position + count] = files["hiddenpng"]
    positions = encoder.get_submodule("embeddings.position_embedding").weight[:77].detach()
    (seen,) = embeddings_layer_outputs(sd1, with_ti, prompt)
    torch.testing.assert_close(seen[0], token_rows + positions, rtol=0, atol=1e-6)
    # every other position holds the prompt's own tokens, in order (the name's tokens became the vectors)
    plain = without.chunker.tokenize_prompt(prompt).chunks[0].tokens
    name_tokens = len(sd1.tokenizers[0]("hiddenpng", add_special_tokens=False)["input_ids"])
    assert chunk.tokens[:position] == plain[:position]
    assert (
        chunk.tokens[position + count : position + count + 3]
        == plain[position + name_tokens : position + name_tokens + 3]
    )

    context = with_ti.encode([prompt]).context[0]
    base = without.encode([prompt]).context[0]
    # causal text encoder: every position before the embedding is untouched, the embedding's are not
    assert torch.equal(context[:position], base[:position])
    assert not torch.allclose(context[position], base[position])


def test_multi_vector_embedding_moves_whole_to_the_next_chunk(
    sd1: TinyModel, files: dict[str, torch.Tensor], activator: NetworkActivator
) -> None:
    conditioner = TextConditioner(sd1.tokenizers, sd1.text_encoders, embeddings=activator.embedding_lookup(sd1))
    prompt = "cat " * 72 + "hiddenpng dog"
    chunks = conditioner.chunker.tokenize_prompt(prompt).chunks
    assert len(chunks) == 2
    assert chunks[0].fixes == () and chunks[0].tokens[73:] == (49407,) * 4  # 72 cats, then padding
    (fix,) = chunks[1].fixes
    assert fix.position == 1 and fix.embedding.vector_count == 4
    first, second = embeddings_layer_outputs(sd1, conditioner, prompt)
    positions = sd1.text_encoders[0].get_submodule("embeddings.position_embedding").weight[1:5].detach()
    torch.testing.assert_close(second[0, 1:5], files["hiddenpng"] + positions, rtol=0, atol=1e-6)
    assert conditioner.encode([prompt]).context.shape == (1, 154, 32)


def test_sdxl_embedding_gives_each_encoder_its_vectors(
    sdxl: TinyModel, files: dict[str, torch.Tensor], activator: NetworkActivator
) -> None:
    conditioner = TextConditioner(
        sdxl.tokenizers, sdxl.text_encoders, family_is_sdxl=True, embeddings=activator.embedding_lookup(sdxl)
    )
    seen: dict[str, torch.Tensor] = {}
    layers = {
        "clip_l": sdxl.text_encoders[0].get_submodule("embeddings"),
        "clip_g": sdxl.text_encoders[1].get_submodule("text_model.embeddings"),
    }
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out, key=key: seen.update({key: out.detach().clone()}))
        for key, layer in layers.items()
    ]
    try:
        context = conditioner.encode(["xlemb"]).context
    finally:
        for hook in hooks:
            hook.remove()
    for key, layer in layers.items():
        positions = layer.position_embedding.weight[1:3].detach()
        torch.testing.assert_close(seen[key][0, 1:3], files[f"xlemb_{key[-1]}"] + positions, rtol=0, atol=1e-6)
    assert context.shape == (1, 77, 96)


def test_ti_hashes_infotext(
    home: Paths, sd1: TinyModel, files: dict[str, torch.Tensor], activator: NetworkActivator
) -> None:
    db = activator.embedding_lookup(sd1)
    hashes = {name: db.loaded[name].shorthash for name in ("a1111pt", "concept")}
    assert db.hashes_infotext(["concept", "a1111pt", "concept", "unknown"]) == (
        f"concept: {hashes['concept']}, a1111pt: {hashes['a1111pt']}"
    )
    assert all(h is not None and len(h) == 12 for h in hashes.values())
    unhashed = EmbeddingDatabase(NetworkCatalogue(home, None).embeddings().files, sd1.tokenizers[0], {"clip_l": 32})
    assert unhashed.hashes_infotext(["concept"]) is None
