"""A1111's "timesteps" samplers (DDIM, DDIM CFG++, PLMS, UniPC) and LCM, in sigma space.

A1111 runs DDIM/PLMS/UniPC on the CompVis variance-preserving latent x_vp with integer (UniPC:
continuous) timesteps and an eps-predicting model. With x = x_vp / sqrt(alpha_bar) (sigma space)
and the same model input x * c_in = x_vp, each update below is the same update written for
x = x0 + sigma * eps, so one `denoiser(x, sigma) -> x0` serves every sampler. Differences that
remain are listed in docs/samplers.md. Conversions at the ends:
- start: pure noise n in A1111's x_vp is x = n * sqrt(1 + sigma_0^2) here (see `txt2img_latent`);
- end: A1111 returns x_vp at its last timestep (not noise-free): these functions return
  x / sqrt(1 + sigma_last^2), the same latent.

Timestep schedules: DDIM/PLMS use timesteps range(0, 1000, 1000 // steps) + 1 and evaluate the model
len - 1 times, the last update landing on timestep 1 (A1111's loop). UniPC walks a continuous time
grid from t=1 (timestep 999) to t=1/1000 (timestep 0).
"""

from __future__ import annotations

import math

import torch

from modules.generation.samplers.common import SamplingRun
from modules.generation.samplers.schedules import ModelSigmas


def ddim_timesteps(steps: int, total: int = 1000) -> torch.Tensor:
    """A1111's DDIM/PLMS timesteps, ascending: range(0, total, total // steps) + 1, clipped to total - 1."""
    if not 1 <= steps <= total:
        raise ValueError(f"DDIM/PLMS/UniPC steps must be between 1 and {total}, got {steps}")
    return torch.clip(torch.arange(0, total, total // steps) + 1, 0, total - 1)


def timestep_sigmas(model: ModelSigmas, timesteps: torch.Tensor) -> torch.Tensor:
    """Sigmas at integer timesteps, in sampling (decreasing) order."""
    return model.sigmas[timesteps.long()].flip(0).float()


def unipc_sigmas(
    model: ModelSigmas, steps: int, skip_type: str = "time_uniform", start_index: int | None = None
) -> torch.Tensor:
    """UniPC's steps + 1 noise levels on its continuous time grid, from timestep `start_index`
    (default: the last) down to timestep 0."""
    if steps < 1:
        raise ValueError(f"UniPC needs at least 1 step, got {steps}")
    total = len(model.sigmas)
    start = total - 1 if start_index is None else int(start_index)
    t_start, t_end = (start + 1) / total, 1 / total
    if skip_type == "time_uniform":
        times = torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)
    elif skip_type == "time_quadratic":
        times = torch.linspace(t_start**0.5, t_end**0.5, steps + 1, dtype=torch.float64) ** 2
    elif skip_type == "logSNR":
        high = model.t_to_sigma(torch.tensor(float(start))).log().item()
        low = model.t_to_sigma(torch.tensor(0.0)).log().item()
        return torch.linspace(high, low, steps + 1, dtype=torch.float64).exp().float()
    else:
        raise ValueError(f"unknown UniPC skip type {skip_type!r}; valid: time_uniform, time_quadratic, logSNR")
    index = (times * total - 1).clamp(0, total - 1)
    return model.t_to_sigma(index.float()).float()


def vp_output(x: torch.Tensor, last_sigma: torch.Tensor) -> torch.Tensor:
    """Sigma-space x at last_sigma as A1111's variance-preserving latent x / sqrt(1 + sigma^2)."""
    return x / (1 + last_sigma.double() ** 2).sqrt().to(x.dtype)


def _eps(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return (x - denoised) / sigma


def _ddim_coefficients(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(direction scale, noise scale) of a DDIM step written in sigma space."""
    alpha = 1 / (1 + sigma**2)
    alpha_prev = 1 / (1 + sigma_next**2)
    sigma_t = eta * math.sqrt((1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev))
    direction = math.sqrt(max(1 - alpha_prev - sigma_t**2, 0.0) / alpha_prev)
    return direction, sigma_t / math.sqrt(alpha_prev)


def sample_ddim(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        direction, noise_scale = _ddim_coefficients(float(sigmas[i]), float(sigmas[i + 1]), run.eta)
        # a noise tensor is drawn every step (scaled by 0 when eta is 0), as A1111 does
        x = denoised + direction * _eps(x, denoised, sigmas[i]) + noise_scale * run.noise()
        run.report(i, sigmas[i], sigmas[i], x, denoised)
    return vp_output(x, sigmas[-1])


def sample_ddim_cfgpp(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """DDIM CFG++ (Chung et al. 2024): renoise along the unconditional prediction.

    Needs the denoiser to expose `last_uncond_denoised` (the uncond x0 of its latest call) and to
    apply A1111's CFG scale multiplier of 1/12.5 (SamplerSpec.cfg_scale_multiplier)."""
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        uncond = getattr(run.uncond_source, "last_uncond_denoised", None)
        if not isinstance(uncond, torch.Tensor):
            raise ValueError("DDIM CFG++ needs a denoiser with a `last_uncond_denoised` tensor after each call")
        direction, noise_scale = _ddim_coefficients(float(sigmas[i]), float(sigmas[i + 1]), run.eta)
        x = denoised + direction * _eps(x, uncond, sigmas[i]) + noise_scale * run.noise()
        run.report(i, sigmas[i], sigmas[i], x, denoised)
    return vp_output(x, sigmas[-1])


def sample_plms(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Pseudo linear multistep: Adams-Bashforth on eps (orders 2-4), a pseudo improved Euler first step."""
    history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        eps = _eps(x, run.denoise(x, sigma), sigma)
        if not history:
            x_euler = x + (sigma_next - sigma) * eps
            eps_next = _eps(x_euler, run.denoise(x_euler, sigma_next), sigma_next)
            combined = (eps + eps_next) / 2
        elif len(history) == 1:
            combined = (3 * eps - history[-1]) / 2
        elif len(history) == 2:
            combined = (23 * eps - 16 * history[-1] + 5 * history[-2]) / 12
        else:
            combined = (55 * eps - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
        predicted_x0 = x - sigma * combined
        x = predicted_x0 + sigma_next * combined
        history.append(eps)
        if len(history) > 3:
            history.pop(0)
        run.report(i, sigma, sigma, x, predicted_x0)
    return vp_output(x, sigmas[-1])


def sample_lcm(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """LCM: jump to the consistency model's x0, then renoise to the next sigma with fresh noise."""
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, sigmas[i], sigmas[i], x, denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * run.noise()
    return x


def _unipc_history(
    models: list[torch.Tensor], prev_sigmas: list[float], sigma: float, order: int
) -> tuple[float, torch.Tensor, list[torch.Tensor]]:
    """Step size h in lambda = -log(sigma), the ratios r_k of earlier steps and the scaled differences D1_k."""
    lambda_prev = -math.log(prev_sigmas[-1])
    h = -math.log(sigma) - lambda_prev
    rks, d1s = [], []
    for i in range(1, order):
        rk = (-math.log(prev_sigmas[-(i + 1)]) - lambda_prev) / h
        rks.append(rk)
        d1s.append((models[-(i + 1)] - models[-1]) / rk)
    return h, torch.tensor([*rks, 1.0], dtype=torch.float64), d1s


def _combine(weights: list[float], tensors: list[torch.Tensor]) -> torch.Tensor | float:
    return sum((w * t for w, t in zip(weights, tensors, strict=True)), 0.0)


def _unipc_bh_update(
    run: SamplingRun,
    x: torch.Tensor,
    models: list[torch.Tensor],
    prev: list[float],
    sigma: float,
    order: int,
    use_corrector: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """UniP step and UniC correction, B(h) variants: bh1 (B = h) or bh2 (B = e^h - 1); data prediction."""
    h, rks, d1s = _unipc_history(models, prev, sigma, order)
    hh = -h
    b_h = hh if run.params.unipc_variant == "bh1" else math.expm1(hh)
    h_phi_k, factorial = math.expm1(hh) / hh - 1, 1
    rows, rhs = [], []
    for i in range(1, order + 1):
        rows.append(rks ** (i - 1))
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    matrix, b = torch.stack(rows), torch.tensor(rhs, dtype=torch.float64)
    base = (sigma / prev[-1]) * x - math.expm1(hh) * models[-1]
    x_new = base
    if d1s:
        rhos_p = [0.5] if order == 2 else torch.linalg.solve(matrix[:-1, :-1], b[:-1]).tolist()
        x_new = base - b_h * _combine(rhos_p, d1s)
    if not use_corrector:
        return x_new, None
    rhos_c = [0.5] if order == 1 else torch.linalg.solve(matrix, b).tolist()
    model_new = run.denoise(x_new, torch.tensor(sigma))
    correction = _combine(rhos_c[:-1], d1s)
    return base - b_h * (correction + rhos_c[-1] * (model_new - models[-1])), model_new


def _unipc_vary_update(
    run: SamplingRun,
    x: torch.Tensor,
    models: list[torch.Tensor],
    prev: list[float],
    sigma: float,
    order: int,
    use_corrector: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """UniPC "vary_coeff" variant: coefficients from the inverse of the Taylor matrix C."""
    h, rks, d1s = _unipc_history(models, prev, sigma, order)
    hh, size = -h, len(rks)
    columns, column = [], torch.ones_like(rks)
    for k in range(1, size + 1):
        columns.append(column)
        column = column * rks / (k + 1)
    taylor = torch.stack(columns, dim=1)
    h_phi_ks, h_phi_k, factorial = [], math.expm1(hh), 1
    for k in range(1, size + 2):
        h_phi_ks.append(h_phi_k)
        h_phi_k = h_phi_k / hh - 1 / factorial
        factorial *= k + 1
    base = (sigma / prev[-1]) * x - math.expm1(hh) * models[-1]
    x_new = base
    if d1s:
        a_p = torch.linalg.inv(taylor[:-1, :-1])
        for k in range(size - 1):
            x_new = x_new - h_phi_ks[k + 1] * _combine(a_p[k].tolist(), d1s)
    if not use_corrector:
        return x_new, None
    a_c = torch.linalg.inv(taylor)
    model_new = run.denoise(x_new, torch.tensor(sigma))
    out, last_row = base, 0
    for last_row in range(size - 1):
        out = out - h_phi_ks[last_row + 1] * _combine(a_c[last_row][:-1].tolist(), d1s)
    # A1111 weights the new difference with the last row it visited (row 0 for order 1)
    out = out - h_phi_ks[size] * (model_new - models[-1]) * float(a_c[last_row][-1])
    return out, model_new


def sample_unipc(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """UniPC multistep (Zhao et al. 2023); A1111's defaults: bh1, order 3, lower order at the end.
    The order is capped at the number of steps (A1111 would stop with an assertion)."""
    steps = len(sigmas) - 1
    if steps < 1:
        return vp_output(x, sigmas[-1])
    order = min(run.params.unipc_order, steps)
    update = _unipc_vary_update if run.params.unipc_variant == "vary_coeff" else _unipc_bh_update
    values = [float(s) for s in sigmas]
    models = [run.denoise(x, sigmas[0])]
    prev = [values[0]]
    for init_order in range(1, order):
        x, model_x = update(run, x, models, prev, values[init_order], init_order, use_corrector=True)
        if model_x is None:
            model_x = run.denoise(x, sigmas[init_order])
        run.report(init_order - 1, sigmas[init_order], sigmas[init_order], x, model_x)
        models.append(model_x)
        prev.append(values[init_order])
    for step in range(order, steps + 1):
        step_order = min(order, steps + 1 - step) if run.params.unipc_lower_order_final else order
        x, model_x = update(run, x, models, prev, values[step], step_order, use_corrector=step != steps)
        run.report(step - 1, sigmas[step], sigmas[step], x, model_x if model_x is not None else x)
        prev = [*prev[1:], values[step]]
        if step < steps:
            models = [*models[1:], model_x if model_x is not None else run.denoise(x, sigmas[step])]
    return vp_output(x, sigmas[-1])
