"""k-diffusion samplers as A1111 runs them, written from the published algorithms.

Karras et al. 2022 (Euler, Heun, churn), DPM-Solver (Lu et al. 2022) and DPM-Solver++ (2S, 2M, SDE,
2M SDE, 3M SDE), linear multistep (LMS), Restart sampling (Xu et al. 2023).

RNG stream: A1111 replaces k-diffusion's torch.randn_like with the per-image generators, so every
draw below is `run.noise()`, at the same points k-diffusion draws (Euler/Heun/DPM2 draw one churn
tensor every step even when churn is off: that keeps later draws where A1111 has them).
"""

from __future__ import annotations

import torch

from modules.generation.samplers.common import SamplingRun, ancestral_step, to_d


def _churn(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Karras "churn": optionally raise the noise level to sigma_hat by adding fresh noise."""
    sigma = sigmas[i]
    in_range = run.s_tmin <= float(sigma) <= run.s_tmax
    gamma = min(run.s_churn / (len(sigmas) - 1), 2**0.5 - 1) if in_range else 0.0
    eps = run.noise() * run.s_noise
    sigma_hat = sigma * (gamma + 1)
    if gamma > 0:
        x = x + eps * (sigma_hat**2 - sigma**2) ** 0.5
    return x, sigma_hat


def sample_euler(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(run, x, sigmas, i)
        denoised = run.denoise(x, sigma_hat)
        run.report(i, sigmas[i], sigma_hat, x, denoised)
        x = x + to_d(x, sigma_hat, denoised) * (sigmas[i + 1] - sigma_hat)
    return x


def sample_euler_ancestral(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], run.eta)
        run.report(i, sigmas[i], sigmas[i], x, denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + run.noise() * run.s_noise * sigma_up
    return x


def sample_heun(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(run, x, sigmas, i)
        denoised = run.denoise(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, sigmas[i], sigma_hat, x, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
            continue
        x_euler = x + d * dt
        d_next = to_d(x_euler, sigmas[i + 1], run.denoise(x_euler, sigmas[i + 1]))
        x = x + (d + d_next) / 2 * dt
    return x


def _dpm2_step(
    run: SamplingRun, x: torch.Tensor, d: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """DPM-Solver-2 style midpoint step from sigma to target (geometric midpoint)."""
    sigma_mid = sigma.log().lerp(target.log(), 0.5).exp()
    x_mid = x + d * (sigma_mid - sigma)
    d_mid = to_d(x_mid, sigma_mid, run.denoise(x_mid, sigma_mid))
    return x + d_mid * (target - sigma)


def sample_dpm_2(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(run, x, sigmas, i)
        denoised = run.denoise(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, sigmas[i], sigma_hat, x, denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            x = _dpm2_step(run, x, d, sigma_hat, sigmas[i + 1])
    return x


def sample_dpm_2_ancestral(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], run.eta)
        run.report(i, sigmas[i], sigmas[i], x, denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            x = _dpm2_step(run, x, d, sigmas[i], sigma_down)
            x = x + run.noise() * run.s_noise * sigma_up
    return x


def _lms_coefficient(order: int, sigmas: list[float], i: int, j: int) -> float:
    """Integral over [sigma_i, sigma_i+1] of the Lagrange basis polynomial j through the last `order` sigmas."""

    def basis(tau: float) -> float:
        product = 1.0
        for k in range(order):
            if k != j:
                product *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k])
        return product

    from scipy import integrate  # ~0.7 s at import: only when an LMS sampler runs

    return float(integrate.quad(basis, sigmas[i], sigmas[i + 1], epsrel=1e-4)[0])


def sample_lms(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor, order: int = 4) -> torch.Tensor:
    sigma_values = sigmas.detach().cpu().double().tolist()
    history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        history.append(to_d(x, sigmas[i], denoised))
        if len(history) > order:
            history.pop(0)
        run.report(i, sigmas[i], sigmas[i], x, denoised)
        current = min(i + 1, order)
        coefficients = [_lms_coefficient(current, sigma_values, i, j) for j in range(current)]
        x = x + sum(c * d for c, d in zip(coefficients, reversed(history), strict=False))
    return x


def _t(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log().neg()


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


def sample_dpmpp_2s_ancestral(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], run.eta)
        run.report(i, sigmas[i], sigmas[i], x, denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(sigma_down)
            h = t_next - t
            s = t + h / 2
            x_mid = (_sigma(s) / _sigma(t)) * x - (-h / 2).expm1() * denoised
            denoised_mid = run.denoise(x_mid, _sigma(s))
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_mid
        if sigmas[i + 1] > 0:
            x = x + run.noise() * run.s_noise * sigma_up
    return x


def sample_dpmpp_sde(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor, r: float = 0.5) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, sigmas[i], sigmas[i], x, denoised)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        weight = 1 / (2 * r)
        # stage 1: ancestral step to the intermediate time s
        sd, su = ancestral_step(_sigma(t), _sigma(s), run.eta)
        s_down = _t(sd)
        x_mid = (_sigma(s_down) / _sigma(t)) * x - (t - s_down).expm1() * denoised
        x_mid = x_mid + run.brownian(_sigma(t), _sigma(s)) * run.s_noise * su
        denoised_mid = run.denoise(x_mid, _sigma(s))
        # stage 2: full step with the blended denoised estimate
        sd, su = ancestral_step(_sigma(t), _sigma(t_next), run.eta)
        t_down = _t(sd)
        blended = (1 - weight) * denoised + weight * denoised_mid
        x = (_sigma(t_down) / _sigma(t)) * x - (t - t_down).expm1() * blended
        x = x + run.brownian(_sigma(t), _sigma(t_next)) * run.s_noise * su
    return x


def sample_dpmpp_2m(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    previous: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, sigmas[i], sigmas[i], x, denoised)
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        if previous is None or sigmas[i + 1] == 0:
            estimate = denoised
        else:
            ratio = (t - _t(sigmas[i - 1])) / h
            estimate = (1 + 1 / (2 * ratio)) * denoised - (1 / (2 * ratio)) * previous
        x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * estimate
        previous = denoised
    return x


def sample_dpmpp_2m_sde(
    run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor, solver_type: str = "midpoint"
) -> torch.Tensor:
    if solver_type not in ("heun", "midpoint"):
        raise ValueError(f"solver_type must be 'heun' or 'midpoint', got {solver_type!r}")
    previous: torch.Tensor | None = None
    h_last: torch.Tensor | None = None
    h: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, sigmas[i], sigmas[i], x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = _t(sigmas[i + 1]) - _t(sigmas[i])
            eta_h = run.eta * h
            decay = (-h - eta_h).expm1().neg()
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + decay * denoised
            if previous is not None and h_last is not None:
                inv_ratio = h / h_last
                if solver_type == "heun":
                    x = x + (decay / (-h - eta_h) + 1) * inv_ratio * (denoised - previous)
                else:
                    x = x + 0.5 * decay * inv_ratio * (denoised - previous)
            if run.eta:
                spread = (-2 * eta_h).expm1().neg().sqrt()
                x = x + run.brownian(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * spread * run.s_noise
        previous = denoised
        h_last = h
    return x


def sample_dpmpp_3m_sde(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    denoised_1: torch.Tensor | None = None
    denoised_2: torch.Tensor | None = None
    h: torch.Tensor | None = None
    h_1: torch.Tensor | None = None
    h_2: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, sigmas[i], sigmas[i], x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = _t(sigmas[i + 1]) - _t(sigmas[i])
            h_eta = h * (run.eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            if h_2 is not None and h_1 is not None and denoised_1 is not None and denoised_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None and denoised_1 is not None:
                x = x + phi_2 * (denoised - denoised_1) / (h_1 / h)
            if run.eta:
                spread = (-2 * h * run.eta).expm1().neg().sqrt()
                x = x + run.brownian(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * spread * run.s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. schedule: n sigmas evenly spaced in sigma^(1/rho), then a trailing 0."""
    ramp = torch.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _restart_plan(sigmas: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Restart's list of (from, to) sigma pairs with A1111's automatic restart settings."""
    steps = sigmas.shape[0] - 1
    restarts: dict[int, tuple[int, int, float]] = {}
    if steps >= 20:
        restart_steps, restart_times = 9, 1
        if steps >= 36:
            restart_steps, restart_times = steps // 4, 2
        sigmas = karras_sigmas(steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item()).to(sigmas)
        at = int(torch.argmin(abs(sigmas - 0.1), dim=0))
        restarts = {at: (restart_steps + 1, restart_times, 2.0)}
    plan: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(len(sigmas) - 1):
        plan.append((sigmas[i], sigmas[i + 1]))
        if i + 1 not in restarts:
            continue
        restart_steps, restart_times, restart_max = restarts[i + 1]
        min_idx = i + 1
        max_idx = int(torch.argmin(abs(sigmas - restart_max), dim=0))
        if max_idx < min_idx:
            restart = karras_sigmas(restart_steps, sigmas[min_idx].item(), sigmas[max_idx].item())[:-1].to(sigmas)
            for _ in range(restart_times):
                plan.extend(zip(restart[:-1], restart[1:], strict=True))
    return plan


def sample_restart(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Restart sampling: Heun steps, and for >= 20 steps jumps back up to sigma 2 (fresh noise) and re-descends."""
    plan = _restart_plan(sigmas)
    run.total = len(plan)
    last_sigma: torch.Tensor | None = None
    for step, (old_sigma, new_sigma) in enumerate(plan):
        if last_sigma is not None and last_sigma < old_sigma:
            x = x + run.noise() * run.s_noise * (old_sigma**2 - last_sigma**2) ** 0.5
        denoised = run.denoise(x, old_sigma)
        d = to_d(x, old_sigma, denoised)
        run.report(step, new_sigma, old_sigma, x, denoised)
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            x = x + d * dt
        else:
            x_euler = x + d * dt
            d_next = to_d(x_euler, new_sigma, run.denoise(x_euler, new_sigma))
            x = x + (d + d_next) / 2 * dt
        last_sigma = new_sigma
    return x
