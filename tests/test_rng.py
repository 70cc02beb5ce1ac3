"""Seeds and noise: A1111's per-image generators, variation seeds, seed resize, ENSD, Philox, Brownian trees."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

from modules.generation.rng import (
    SEED_RANGE,
    BrownianTreeNoise,
    ImageRNG,
    fix_seed,
    get_fixed_seed,
    plan_seeds,
    randn_for_seed,
    random_seed,
    slerp,
)
from modules.generation.rng_philox import PhiloxGenerator, philox4x32

SHAPE = (4, 8, 6)

# torch.manual_seed(0); torch.randn((3, 4), device="cuda") - the values published with A1111's emulation
CUDA_SEED0_3X4 = [
    [-0.92466259, -0.42534415, -2.6438457, 0.14518388],
    [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
    [-1.07454231, -0.36314407, -1.67105067, 2.26550497],
]


# --- Philox ---------------------------------------------------------------------------------------


def test_philox_matches_published_cuda_randn_for_seed_0() -> None:
    values = PhiloxGenerator(0).randn((3, 4))
    assert values.dtype == torch.float32
    assert torch.allclose(values, torch.tensor(CUDA_SEED0_3X4), atol=1e-6)


def test_philox_block_is_a_bijection_of_the_counter_for_a_key() -> None:
    counter = np.zeros((4, 5), dtype=np.uint32)
    counter[2] = np.arange(5, dtype=np.uint32)
    key = np.zeros((2, 5), dtype=np.uint32)
    block = philox4x32(counter, key)
    assert block.dtype == np.uint32
    assert len({tuple(col) for col in block.T}) == 5  # distinct counters, distinct outputs


def test_philox_is_deterministic_and_advances_per_call() -> None:
    a, b = PhiloxGenerator(1234), PhiloxGenerator(1234)
    first_a, first_b = a.randn((4, 16)), b.randn((4, 16))
    assert torch.equal(first_a, first_b)
    second = a.randn((4, 16))
    assert not torch.allclose(first_a, second)
    assert torch.equal(second, b.randn((4, 16)))
    assert not torch.allclose(PhiloxGenerator(1235).randn((4, 16)), first_a)


def test_philox_prefix_does_not_depend_on_request_size() -> None:
    # element i has its own counter, so a longer request extends a shorter one
    assert torch.equal(PhiloxGenerator(9).randn((10,)), PhiloxGenerator(9).randn((100,))[:10])


def test_philox_values_are_standard_normal() -> None:
    values = PhiloxGenerator(2024).randn((200_000,)).double().numpy()
    assert abs(values.mean()) < 0.01
    assert abs(values.std() - 1) < 0.01
    assert stats.kstest(values, "norm").pvalue > 1e-3
    other = PhiloxGenerator(2025).randn((200_000,)).double().numpy()
    assert abs(np.corrcoef(values, other)[0, 1]) < 0.01


def test_philox_rejects_bad_seed_and_shape() -> None:
    with pytest.raises(ValueError, match="seed"):
        PhiloxGenerator(-1)
    with pytest.raises(ValueError, match="negative"):
        PhiloxGenerator(0).randn((2, -1))


# --- seeds ----------------------------------------------------------------------------------------


def test_random_seed_for_minus_one_empty_and_garbage() -> None:
    for value in (-1, "-1", "", None, "not a number"):
        seed = get_fixed_seed(value)
        assert isinstance(seed, int)
        assert 0 <= seed < SEED_RANGE
    assert get_fixed_seed(-1, random.Random(5)) == get_fixed_seed(-1, random.Random(5))
    assert random_seed(random.Random(1)) == random.Random(1).randrange(4294967294)


def test_fixed_seeds_are_kept() -> None:
    fixed = fix_seed(-1, "5", random.Random(0))
    assert fixed.subseed == 5 and 0 <= fixed.seed < SEED_RANGE
    assert get_fixed_seed(42) == 42
    assert get_fixed_seed(" 77 ") == 77
    assert get_fixed_seed(0) == 0


def test_plan_seeds_follows_variation_strength() -> None:
    plain = plan_seeds(100, 7, 0.0, 3)
    assert plain.all_seeds == [100, 101, 102]
    assert plain.all_subseeds == [7, 8, 9]
    varied = plan_seeds(100, 7, 0.4, 3)
    assert varied.all_seeds == [100, 100, 100]
    assert varied.all_subseeds == [7, 8, 9]
    random_plan = plan_seeds(-1, -1, 0.0, 2, random.Random(3))
    assert random_plan.all_seeds[1] == random_plan.all_seeds[0] + 1
    with pytest.raises(ValueError):
        plan_seeds(1, 1, 0.0, -1)


# --- ImageRNG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["GPU", "CPU", "NV"])
def test_image_noise_does_not_depend_on_its_batch(source: str) -> None:
    batch = ImageRNG(SHAPE, [10, 11, 12, 13], source=source)
    alone = ImageRNG(SHAPE, [12], source=source)
    first_batch, first_alone = batch.next(), alone.next()
    assert first_batch.shape == (4, *SHAPE)
    assert torch.equal(first_batch[2], first_alone[0])
    assert torch.equal(batch.next()[2], alone.next()[0])  # sampler noise too
    assert not torch.allclose(first_batch[0], first_batch[1])


def test_first_noise_is_the_seeded_generator_output() -> None:
    expected = torch.randn(SHAPE, generator=torch.Generator().manual_seed(55))
    assert torch.equal(ImageRNG(SHAPE, [55], source="CPU").first()[0], expected)
    assert torch.equal(ImageRNG(SHAPE, [55], source="NV").first()[0], PhiloxGenerator(55).randn(SHAPE))


def test_gpu_source_on_a_cpu_device_is_the_cpu_generator() -> None:
    gpu = ImageRNG(SHAPE, [3, 4], source="GPU", device="cpu")
    cpu = ImageRNG(SHAPE, [3, 4], source="CPU", device="cpu")
    assert torch.equal(gpu.next(), cpu.next())
    assert torch.equal(gpu.next(), cpu.next())


def test_variation_strength_endpoints() -> None:
    seed_only = ImageRNG(SHAPE, [20], source="CPU").first()
    sub_only = ImageRNG(SHAPE, [30], source="CPU").first()
    zero = ImageRNG(SHAPE, [20], subseeds=[30], subseed_strength=0.0, source="CPU").first()
    one = ImageRNG(SHAPE, [20], subseeds=[30], subseed_strength=1.0, source="CPU").first()
    half = ImageRNG(SHAPE, [20], subseeds=[30], subseed_strength=0.5, source="CPU").first()
    assert torch.equal(zero, seed_only)
    assert torch.allclose(one, sub_only, atol=1e-5)
    assert not torch.allclose(half, seed_only) and not torch.allclose(half, sub_only)
    assert torch.allclose(half, slerp(0.5, seed_only[0], sub_only[0])[None])


def test_slerp_normalises_along_dim_1_and_keeps_the_parallel_quirk() -> None:
    low = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1))
    high = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(2))
    result = slerp(0.3, low, high)
    # textbook slerp per (channel, column), angles taken along dim 1
    cos = (low / low.norm(dim=1, keepdim=True) * high / high.norm(dim=1, keepdim=True)).sum(1, keepdim=True)
    omega = torch.acos(cos)
    expected = torch.sin(0.7 * omega) / torch.sin(omega) * low + torch.sin(0.3 * omega) / torch.sin(omega) * high
    assert torch.allclose(result, expected, atol=1e-5)
    # nearly parallel inputs: A1111 returns low*val + high*(1-val), the weights reversed
    near = low * 1.0001
    assert torch.allclose(slerp(0.3, low, near), low * 0.3 + near * 0.7)


def test_seed_resize_keeps_the_centre_when_shrinking() -> None:
    # a 64x48 px image (8x6 latent) made from seed noise of a 128x96 px image (16x12 latent)
    big = randn_for_seed(8, (4, 16, 12), "CPU")
    resized = ImageRNG(SHAPE, [8], seed_resize_from_h=128, seed_resize_from_w=96, source="CPU").first()[0]
    assert torch.equal(resized, big[:, 4:12, 3:9])


def test_seed_resize_pastes_the_old_noise_in_the_centre_when_growing() -> None:
    small = randn_for_seed(8, (4, 4, 2), "CPU")
    own = randn_for_seed(8, SHAPE, "CPU")
    resized = ImageRNG(SHAPE, [8], seed_resize_from_h=32, seed_resize_from_w=16, source="CPU").first()[0]
    assert torch.equal(resized[:, 2:6, 2:4], small)
    outside = torch.ones(SHAPE, dtype=torch.bool)
    outside[:, 2:6, 2:4] = False
    assert torch.equal(resized[outside], own[outside])


def test_seed_resize_needs_both_sides() -> None:
    plain = ImageRNG(SHAPE, [8], source="CPU").first()
    assert torch.equal(ImageRNG(SHAPE, [8], seed_resize_from_h=64, seed_resize_from_w=0, source="CPU").first(), plain)


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_ensd_reseeds_sampler_noise_but_not_the_initial_noise(source: str) -> None:
    plain = ImageRNG(SHAPE, [40, 41], source=source)
    ensd = ImageRNG(SHAPE, [40, 41], source=source, eta_noise_seed_delta=31337)
    assert torch.equal(plain.next(), ensd.next())
    after = ensd.next()
    assert torch.equal(after[1], randn_for_seed(41 + 31337, SHAPE, source))
    assert not torch.allclose(plain.next(), after)


def test_image_rng_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="valid: GPU, CPU, NV"):
        ImageRNG(SHAPE, [1], source="TPU")
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        ImageRNG((4, 8), [1])
    with pytest.raises(ValueError, match="seed"):
        ImageRNG(SHAPE, [])


# --- Brownian tree --------------------------------------------------------------------------------


def test_brownian_noise_is_per_image_and_unit_variance() -> None:
    x = torch.zeros(2, 4, 16, 16)
    both = BrownianTreeNoise(x, 0.03, 14.6, [5, 6])
    alone = BrownianTreeNoise(x[:1], 0.03, 14.6, [6])
    step = both(torch.tensor(3.0), torch.tensor(2.0))
    assert torch.allclose(step[1], alone(torch.tensor(3.0), torch.tensor(2.0))[0])
    assert abs(step.std().item() - 1) < 0.05
    assert not torch.allclose(step[0], step[1])


def test_brownian_increments_add_up() -> None:
    x = torch.zeros(1, 4, 8, 8)
    tree = BrownianTreeNoise(x, 0.03, 14.6, [9])

    def increment(a: float, b: float) -> torch.Tensor:
        return tree(torch.tensor(a), torch.tensor(b)) * math.sqrt(abs(b - a))

    assert torch.allclose(increment(5.0, 3.0) + increment(3.0, 1.0), increment(5.0, 1.0), atol=1e-5)
    # whole range and a little beyond it (float rounding at the ends) works without warnings
    assert torch.isfinite(tree(torch.tensor(14.6000001), torch.tensor(0.0299999))).all()


def test_brownian_noise_rejects_bad_arguments() -> None:
    x = torch.zeros(2, 4, 8, 8)
    with pytest.raises(ValueError, match="one seed per image"):
        BrownianTreeNoise(x, 0.1, 1.0, [1])
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        BrownianTreeNoise(x, 1.0, 1.0, [1, 2])
