"""Token merging: the matching algorithm, the reversible UNet patch, and its use in a job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from modules.generation.infotext import parse_generation_parameters
from modules.generation.speed.tome import grid_partition, plan_merge, token_merging
from modules.models.families import ModelFamily
from tests.fixtures_models import TinyModelFiles
from tests.gen_env import GenEnv, make_env, pixels
from tools.tiny_models import tiny_parts


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny models gain nothing from a second thread, and on a busy shared CPU the threads'
    # synchronisation makes each call ~10x slower; restored for the rest of the session.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    return tiny_parts(ModelFamily.SD1).unet


@pytest.fixture(scope="module")
def speed_env(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelFiles) -> GenEnv:
    env = make_env(tmp_path_factory.mktemp("speed-tome"), tiny_models)
    return env


def _unet_inputs(unet: torch.nn.Module, size: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, size, size, generator=g)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    return x, torch.tensor([500.0, 500.0]), context


def _run(unet: torch.nn.Module, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, t, context = inputs
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=context).sample


def _hook_count(module: torch.nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in module.modules())


# --- the algorithm ------------------------------------------------------------------------------


def test_destinations_are_top_left_of_each_2x2_cell() -> None:
    src, dst = grid_partition(4, 6)
    assert dst.tolist() == [0, 2, 4, 12, 14, 16]
    assert sorted(src.tolist() + dst.tolist()) == list(range(24))


def test_odd_grid_edges_are_sources() -> None:
    src, dst = grid_partition(3, 3)
    assert dst.tolist() == [0]  # only one complete 2x2 cell
    assert len(src) == 8


def test_merge_removes_r_tokens_and_unmerge_restores_the_count() -> None:
    metric = torch.randn(2, 64, 8)
    plan = plan_merge(metric, 8, 8, r=32)
    assert plan is not None
    merged = plan.merge(metric)
    assert merged.shape == (2, 32, 8)
    assert plan.unmerge(merged).shape == (2, 64, 8)


def test_merging_identical_tokens_loses_nothing() -> None:
    x = torch.ones(1, 16, 4) * torch.arange(4.0)
    plan = plan_merge(x, 4, 4, r=12)
    assert plan is not None
    assert torch.equal(plan.unmerge(plan.merge(x)), x)


def test_most_similar_source_merges_into_its_destination() -> None:
    # 2x2 grid: one destination (token 0); with r=1 the source most similar to it merges.
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [-1.0, 0.0]]])
    plan = plan_merge(x, 2, 2, r=1)
    assert plan is not None
    assert plan.src_pos[plan.merged[0]].tolist() == [2]
    out = plan.unmerge(plan.merge(x))
    mean = (x[0, 0] + x[0, 2]) / 2
    assert torch.allclose(out[0, 0], mean) and torch.allclose(out[0, 2], mean)
    assert torch.equal(out[0, 1], x[0, 1]) and torch.equal(out[0, 3], x[0, 3])


def test_nothing_to_merge_gives_no_plan() -> None:
    assert plan_merge(torch.randn(1, 16, 4), 4, 4, r=0) is None
    assert plan_merge(torch.randn(1, 4, 4), 1, 4, r=2) is None


def test_wrong_grid_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="do not form a 4x5 grid"):
        plan_merge(torch.randn(1, 16, 4), 4, 5, r=2)


# --- the patch ----------------------------------------------------------------------------------


def test_ratio_half_changes_output_and_restores_bit_exactly(unet: torch.nn.Module) -> None:
    inputs = _unet_inputs(unet)
    hooks_before = _hook_count(unet)
    base = _run(unet, inputs)
    with token_merging(unet, 0.5) as state:
        merged = _run(unet, inputs)
    after = _run(unet, inputs)
    assert state.merged_calls > 0
    assert not torch.allclose(merged, base, atol=1e-4)
    assert torch.equal(after, base)
    assert _hook_count(unet) == hooks_before
    assert "_speed_token_merging" not in unet.__dict__


def test_only_the_highest_resolution_is_merged(unet: torch.nn.Module) -> None:
    calls: list[int] = []
    blocks = [m for m in unet.modules() if hasattr(m, "attn1") and hasattr(m, "norm1")]
    with token_merging(unet, 0.5):
        # registered after the merge hook, so they see what attention receives
        handles = [b.attn1.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[1])) for b in blocks]
        try:
            _run(unet, _unet_inputs(unet, size=8))
        finally:
            for h in handles:
                h.remove()
    full = 8 * 8
    assert full // 2 in calls  # merged: half the tokens
    assert full not in calls  # no unmerged call at full resolution
    assert 4 * 4 in calls  # lower resolutions untouched


def test_ratio_zero_is_a_no_op(unet: torch.nn.Module) -> None:
    inputs = _unet_inputs(unet)
    base = _run(unet, inputs)
    with token_merging(unet, 0.0) as state:
        assert torch.equal(_run(unet, inputs), base)
    assert state.merged_calls == 0


def test_nested_patch_changes_ratio_and_puts_it_back(unet: torch.nn.Module) -> None:
    inputs = _unet_inputs(unet)
    with token_merging(unet, 0.0) as outer:
        base = _run(unet, inputs)
        with token_merging(unet, 0.5) as inner:
            assert inner is outer and outer.ratio == 0.5
            assert not torch.equal(_run(unet, inputs), base)
        assert outer.ratio == 0.0
        assert torch.equal(_run(unet, inputs), base)
    assert _hook_count(unet) == 0


@pytest.mark.parametrize("ratio", [-0.1, 0.95])
def test_bad_ratio_is_rejected(unet: torch.nn.Module, ratio: float) -> None:
    with pytest.raises(ValueError, match="token merging ratio"), token_merging(unet, ratio):
        pass


# --- in a job -----------------------------------------------------------------------------------


def _txt2img(env: GenEnv, **overrides: object) -> tuple[np.ndarray, str]:
    settings = {"sd_model_checkpoint": "tiny-sd1", **overrides}
    result = env.txt2img(prompt="a tree", seed=7, steps=2, override_settings=settings)
    return pixels(result.images[0]), result.infotexts[0]


def test_job_with_token_merging_differs_and_next_job_is_unchanged(speed_env: GenEnv) -> None:
    base, base_info = _txt2img(speed_env)
    merged, merged_info = _txt2img(speed_env, token_merging_ratio=0.5)
    again, _ = _txt2img(speed_env)
    assert not np.array_equal(merged, base)
    assert np.array_equal(again, base)
    assert parse_generation_parameters(merged_info)["Token merging ratio"] == "0.5"
    assert "Token merging ratio" not in base_info


def test_hires_pass_reports_its_own_ratio(speed_env: GenEnv, tmp_path: Path) -> None:
    result = speed_env.txt2img(
        prompt="a tree",
        seed=7,
        steps=2,
        enable_hr=True,
        hr_scale=1.5,
        hr_upscaler="Latent",
        denoising_strength=0.5,
        override_settings={"sd_model_checkpoint": "tiny-sd1", "token_merging_ratio_hr": 0.3},
    )
    params = parse_generation_parameters(result.infotexts[0])
    assert params["Token merging ratio hr"] == "0.3"
    assert "Token merging ratio" not in params
    assert result.images[0].size == (96, 96)


def test_sdxl_needs_max_downsample_2_for_any_merging() -> None:
    unet = tiny_parts(ModelFamily.SDXL).unet
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    added = {"text_embeds": torch.randn(2, 48, generator=g), "time_ids": torch.randn(2, 6, generator=g)}

    def run() -> torch.Tensor:
        with torch.no_grad():
            return unet(x, torch.tensor([500.0, 500.0]), encoder_hidden_states=context, added_cond_kwargs=added).sample

    base = run()
    with token_merging(unet, 0.5) as level_one:  # SDXL's first level has no attention
        assert torch.equal(run(), base)
    with token_merging(unet, 0.5, max_downsample=2) as level_two:
        assert not torch.allclose(run(), base, atol=1e-4)
    assert level_one.merged_calls == 0 and level_two.merged_calls > 0
    assert torch.equal(run(), base)
