"""Model sigmas, denoiser scalings and every schedule type, with A1111's values and quirks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modules.generation.samplers.schedules import (
    AYS_SD15,
    AYS_SDXL,
    SCHEDULERS,
    LcmSigmas,
    ModelSigmas,
    ScheduleOptions,
    UnknownSchedulerError,
    denoiser_scalings,
    find_scheduler,
    scaled_linear_alphas_cumprod,
    scheduler_sigmas,
)


@pytest.fixture(scope="module")
def sd() -> ModelSigmas:
    return ModelSigmas.from_alphas_cumprod(scaled_linear_alphas_cumprod())


def make(name: str, n: int, model: ModelSigmas, **options: object) -> torch.Tensor:
    return scheduler_sigmas(find_scheduler(name), n, model, ScheduleOptions(**options)).sigmas  # type: ignore[arg-type]


# --- model sigmas ---------------------------------------------------------------------------------


def test_sd_model_sigma_range(sd: ModelSigmas) -> None:
    assert len(sd.sigmas) == 1000
    assert sd.sigma_min == pytest.approx(0.02916753, abs=1e-6)
    assert sd.sigma_max == pytest.approx(14.6146412, abs=1e-4)
    assert torch.allclose(sd.alphas_cumprod, scaled_linear_alphas_cumprod(), atol=1e-6)


def test_sigma_and_timestep_maps(sd: ModelSigmas) -> None:
    steps = torch.tensor([0, 1, 500, 999])
    assert torch.allclose(sd.sigma_to_t(sd.sigmas[steps]), steps.float(), atol=1e-3)
    assert torch.allclose(sd.t_to_sigma(steps), sd.sigmas[steps])
    fractional = torch.tensor([0.25, 10.5, 998.75])
    assert torch.allclose(sd.sigma_to_t(sd.t_to_sigma(fractional)), fractional, atol=1e-3)
    # t_to_sigma interpolates log sigma
    mid = sd.t_to_sigma(torch.tensor(10.5))
    assert mid.item() == pytest.approx(math.sqrt(sd.sigmas[10].item() * sd.sigmas[11].item()), rel=1e-5)
    # outside the table: clamped to the ends
    assert sd.sigma_to_t(torch.tensor([0.001, 100.0])).tolist() == pytest.approx([0.0, 999.0])
    assert sd.sigma_to_t(sd.t_to_sigma(torch.tensor(10.4)), quantize=True).item() == 10


def test_model_sigmas_validation() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        ModelSigmas.from_alphas_cumprod(torch.tensor([0.9, 1.0]))
    with pytest.raises(ValueError, match="ascending"):
        ModelSigmas(torch.tensor([2.0, 1.0]))


def test_denoiser_scalings() -> None:
    sigma = torch.tensor([0.5, 2.0])
    eps = denoiser_scalings(sigma, "epsilon")
    assert eps.c_in.shape == (2, 1, 1, 1)
    assert torch.allclose(eps.c_in.flatten(), 1 / torch.sqrt(sigma**2 + 1))
    assert torch.allclose(eps.c_out.flatten(), -sigma)
    assert torch.allclose(eps.c_skip.flatten(), torch.ones(2))
    v = denoiser_scalings(sigma, "v_prediction", ndim=2)
    assert v.c_skip.shape == (2, 1)
    assert torch.allclose(v.c_skip.flatten(), 1 / (sigma**2 + 1))
    assert torch.allclose(v.c_out.flatten(), -sigma / torch.sqrt(sigma**2 + 1))
    # an eps model that predicts the true noise recovers x0 exactly
    x0, noise = torch.full((2, 1, 1, 1), 0.7), torch.full((2, 1, 1, 1), -1.3)
    x = x0 + noise * sigma.reshape(-1, 1, 1, 1)
    assert torch.allclose(x * eps.c_skip + noise * eps.c_out, x0)
    with pytest.raises(ValueError, match="unknown prediction type"):
        denoiser_scalings(sigma, "flow")


def test_lcm_sigmas(sd: ModelSigmas) -> None:
    lcm = LcmSigmas(sd)
    assert len(lcm.sigmas) == 50
    assert torch.equal(lcm.sigmas, sd.sigmas[19::20])
    assert lcm.sigma_to_t(lcm.sigmas[[0, 1, 49]]).tolist() == [19, 39, 999]
    assert lcm.sigma_to_t(torch.tensor(sd.sigmas[45].item())).item() == 39  # nearest LCM timestep
    sigmas = lcm.get_sigmas(4)
    assert sigmas[0].item() == pytest.approx(sd.sigmas[999].item(), rel=1e-6)
    assert sigmas[-2].item() == pytest.approx(sd.sigmas[19].item(), rel=1e-6)
    assert sigmas[-1].item() == 0
    # boundary condition at timestep 19: c_skip = 0.25 / (190^2 + 0.25), c_out = 190 / sqrt(190^2 + 0.25)
    x, denoised = torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.0)
    out = lcm.finish_denoised(x, denoised, lcm.sigmas[:1])
    expected = 190 / math.sqrt(190**2 + 0.25) * 2.0 + 0.25 / (190**2 + 0.25)
    assert out.item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(sd.finish_denoised(x, denoised, lcm.sigmas[:1]), denoised)


# --- every schedule type --------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", [s.name for s in SCHEDULERS])
@pytest.mark.parametrize("n", [1, 4, 20])
def test_every_schedule_decreases_from_about_sigma_max(sd: ModelSigmas, scheduler: str, n: int) -> None:
    sigmas = make(scheduler, n, sd)
    assert sigmas.dtype == torch.float32 and sigmas.ndim == 1
    assert bool(torch.all(sigmas[1:] <= sigmas[:-1]))
    if scheduler == "align_your_steps" and n == 1:  # A1111 interpolates 1 point at the table's low end
        assert sigmas.tolist() == pytest.approx([0.029, 0.0])
        return
    if scheduler == "ddim":  # timesteps 1, 1 + 1000 // n, ... below 1000: starts below sigma_max
        stride = 1000 // n
        assert sigmas[0].item() == sd.sigmas[1 + stride * ((998) // stride)].item()
    else:
        assert 10 < sigmas[0].item() < 15
    if scheduler == "kl_optimal":  # A1111 appends no 0: it ends at sigma_min
        assert len(sigmas) == n + 1
        assert sigmas[-1].item() == pytest.approx(sd.sigma_min, rel=1e-5)
    elif scheduler == "ddim":
        assert len(sigmas) == math.ceil(999 / (1000 // n)) + 1
        assert sigmas[-1].item() == 0
    else:
        assert len(sigmas) == n + 1
        assert sigmas[-1].item() == 0
        assert sigmas[-2].item() > 0


def test_karras_closed_form(sd: ModelSigmas) -> None:
    n, lo, hi, rho = 10, 0.1, 10.0, 7.0
    ramp = np.linspace(0, 1, n)
    expected = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    sigmas = make("karras", n, sd, sigma_min=lo, sigma_max=hi)
    assert np.allclose(sigmas[:-1].numpy(), expected, rtol=1e-5)
    assert sigmas[0].item() == pytest.approx(hi) and sigmas[-2].item() == pytest.approx(lo)


def test_exponential_is_log_uniform_and_polyexponential_generalises_it(sd: ModelSigmas) -> None:
    sigmas = make("exponential", 8, sd)
    steps = np.diff(np.log(sigmas[:-1].numpy()))
    assert np.allclose(steps, steps[0], rtol=1e-4)
    assert sigmas[0].item() == pytest.approx(sd.sigma_max, rel=1e-5)
    assert sigmas[-2].item() == pytest.approx(sd.sigma_min, rel=1e-5)
    assert torch.allclose(make("polyexponential", 8, sd), sigmas, rtol=1e-5)
    curved = make("polyexponential", 8, sd, rho=2.0)[:-1].numpy()
    ramp = np.linspace(1, 0, 8) ** 2
    log_min, log_max = math.log(sd.sigma_min), math.log(sd.sigma_max)
    assert np.allclose(curved, np.exp(ramp * (log_max - log_min) + log_min), rtol=1e-5)


def test_kl_optimal_is_uniform_in_arctan(sd: ModelSigmas) -> None:
    sigmas = make("kl_optimal", 6, sd).numpy()
    angles = np.diff(np.arctan(sigmas))
    assert np.allclose(angles, angles[0], rtol=1e-4)


def test_align_your_steps_tables(sd: ModelSigmas) -> None:
    sd15 = make("align_your_steps", 11, sd)
    sdxl = make("align_your_steps", 11, sd, is_sdxl=True)
    assert np.allclose(sd15.numpy(), [*AYS_SD15, 0.0])
    assert np.allclose(sdxl.numpy(), [*AYS_SDXL, 0.0])
    assert not torch.allclose(sd15, sdxl)
    # other step counts: log-linear interpolation of the 11 published sigmas, ends kept
    ten = make("align_your_steps", 10, sd).numpy()
    assert len(ten) == 11 and ten[0] == pytest.approx(14.615) and ten[-2] == pytest.approx(0.029)
    thirty = make("align_your_steps", 31, sd).numpy()[:-1]  # 31 points: every 3rd is a table value
    assert np.allclose(thirty[::3], AYS_SD15, rtol=1e-5)
    assert np.allclose(np.log(thirty[1]), (2 * np.log(AYS_SD15[0]) + np.log(AYS_SD15[1])) / 3, rtol=1e-5)


def test_simple_ddim_and_uniform_pick_model_sigmas(sd: ModelSigmas) -> None:
    simple = make("simple", 4, sd)
    assert torch.equal(simple[:-1], sd.sigmas[[999, 749, 499, 249]])
    ddim = make("ddim", 4, sd)
    assert torch.equal(ddim[:-1], sd.sigmas[[751, 501, 251, 1]])
    assert len(make("ddim", 30, sd)) == 32  # 1000 // 30 = 33: 31 timesteps, A1111's quirk
    uniform = make("uniform", 3, sd)
    assert torch.allclose(uniform[:-1], sd.t_to_sigma(torch.tensor([999.0, 499.5, 0.0])))
    assert torch.equal(make("automatic", 3, sd), uniform)


def test_sgm_uniform_and_normal(sd: ModelSigmas) -> None:
    sgm = make("sgm_uniform", 4, sd)
    assert torch.allclose(sgm[:-1], sd.t_to_sigma(torch.tensor([999.0, 749.25, 499.5, 249.75])), rtol=1e-5)
    normal = make("normal", 4, sd)
    assert torch.allclose(normal[:-1], sd.t_to_sigma(torch.tensor([999.0, 666.0, 333.0, 0.0])), rtol=1e-5)


def test_beta_schedule(sd: ModelSigmas) -> None:
    sigmas = make("beta", 5, sd)
    assert sigmas[0].item() == pytest.approx(sd.sigma_max, rel=1e-5)
    assert sigmas[-2].item() == pytest.approx(sd.sigma_min, rel=1e-5)
    assert sigmas[2].item() == pytest.approx((sd.sigma_min + sd.sigma_max) / 2, rel=1e-4)  # alpha == beta
    skewed = scheduler_sigmas(find_scheduler("beta"), 5, sd, ScheduleOptions(beta_alpha=0.3, beta_beta=0.9))
    assert skewed.extra_generation_params["Beta schedule alpha"] == 0.3
    assert skewed.sigmas[2].item() < sigmas[2].item()


# --- options and infotext -------------------------------------------------------------------------


def test_overrides_apply_and_are_reported(sd: ModelSigmas) -> None:
    result = scheduler_sigmas(find_scheduler("karras"), 6, sd, ScheduleOptions(sigma_min=0.5, sigma_max=8.0, rho=3.0))
    assert result.sigmas[0].item() == pytest.approx(8.0) and result.sigmas[-2].item() == pytest.approx(0.5)
    assert result.extra_generation_params == {
        "Schedule type": "Karras",
        "Schedule min sigma": 0.5,
        "Schedule max sigma": 8.0,
        "Schedule rho": 3.0,
    }
    assert not torch.allclose(result.sigmas, make("karras", 6, sd, sigma_min=0.5, sigma_max=8.0))
    # rho only for schedules that have one; the default rho is not reported
    assert (
        "Schedule rho"
        not in scheduler_sigmas(find_scheduler("exponential"), 6, sd, ScheduleOptions(rho=3.0)).extra_generation_params
    )
    assert (
        "Schedule rho"
        not in scheduler_sigmas(find_scheduler("karras"), 6, sd, ScheduleOptions(rho=7.0)).extra_generation_params
    )


def test_old_karras_sigmas_option(sd: ModelSigmas) -> None:
    sigmas = make("karras", 5, sd, use_old_karras_scheduler_sigmas=True)
    assert sigmas[0].item() == pytest.approx(10.0) and sigmas[-2].item() == pytest.approx(0.1)


def test_bad_options_and_steps(sd: ModelSigmas) -> None:
    with pytest.raises(ValueError, match="sigma_min"):
        ScheduleOptions(sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="rho"):
        ScheduleOptions(rho=-1.0)
    with pytest.raises(ValueError, match="beta"):
        ScheduleOptions(beta_alpha=0.0)
    with pytest.raises(ValueError, match="steps"):
        scheduler_sigmas(find_scheduler("karras"), 0, sd, ScheduleOptions())


def test_find_scheduler_by_label_name_alias() -> None:
    assert find_scheduler("Karras").name == "karras"
    assert find_scheduler("karras").label == "Karras"
    assert find_scheduler("SGMUniform").name == "sgm_uniform"
    assert find_scheduler("sgm uniform").name == "sgm_uniform"
    assert find_scheduler("ALIGN_YOUR_STEPS").label == "Align Your Steps"
    assert find_scheduler(None).name == "automatic"
    assert find_scheduler("").name == "automatic"
    with pytest.raises(UnknownSchedulerError) as error:
        find_scheduler("Turbo")
    assert "Karras (karras)" in str(error.value) and "Beta (beta)" in str(error.value)


def test_scheduler_api_items() -> None:
    items = {s.name: s.api_item() for s in SCHEDULERS}
    assert list(items) == [
        "automatic", "uniform", "karras", "exponential", "polyexponential", "sgm_uniform",
        "kl_optimal", "align_your_steps", "simple", "normal", "ddim", "beta",
    ]  # fmt: skip
    assert items["karras"] == {
        "name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0, "need_inner_model": False,
    }  # fmt: skip
    assert items["sgm_uniform"]["aliases"] == ["SGMUniform"]
    assert items["polyexponential"]["default_rho"] == 1.0
    assert [n for n, item in items.items() if item["need_inner_model"]] == [
        "uniform", "sgm_uniform", "simple", "normal", "ddim", "beta",
    ]  # fmt: skip
