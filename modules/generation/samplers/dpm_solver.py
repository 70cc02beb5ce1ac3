"""DPM-Solver (Lu et al. 2022, arXiv:2206.00927): "DPM fast" (fixed steps) and "DPM adaptive".

Works in t = -log(sigma) with first/second/third order singlestep updates on eps. With eta > 0
(A1111's default: eta_ancestral = 1) every step is ancestral: it goes down to sigma_down and adds
per-image noise, which is why both samplers "use ENSD".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from modules.generation.samplers.common import SamplingRun, ancestral_step


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


def _t(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log().neg()


class _EpsCache:
    """Model calls of one step, as noise predictions, keyed by stage."""

    def __init__(self, run: SamplingRun) -> None:
        self.run = run
        self.values: dict[str, torch.Tensor] = {}

    def eps(self, key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if key not in self.values:
            sigma = _sigma(t)
            self.values[key] = (x - self.run.denoise(x, sigma)) / sigma
        return self.values[key]


def _order1(cache: _EpsCache, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    h = t_next - t
    return x - _sigma(t_next) * h.expm1() * cache.eps("eps", x, t)


def _order2(
    cache: _EpsCache, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, r1: float = 1 / 2
) -> torch.Tensor:
    h = t_next - t
    eps = cache.eps("eps", x, t)
    s1 = t + r1 * h
    u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
    eps_r1 = cache.eps("eps_r1", u1, s1)
    return x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)


def _order3(
    cache: _EpsCache, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, r1: float = 1 / 3, r2: float = 2 / 3
) -> torch.Tensor:
    h = t_next - t
    eps = cache.eps("eps", x, t)
    s1, s2 = t + r1 * h, t + r2 * h
    u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
    eps_r1 = cache.eps("eps_r1", u1, s1)
    u2 = (
        x
        - _sigma(s2) * (r2 * h).expm1() * eps
        - _sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps)
    )
    eps_r2 = cache.eps("eps_r2", u2, s2)
    return x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)


def _ancestral_target(
    run: SamplingRun, t: torch.Tensor, t_next: torch.Tensor, t_end: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where an ancestral step lands (in t) and how much noise it then adds."""
    if not run.eta:
        return t_next, torch.zeros_like(t_next)
    sigma_down, _ = ancestral_step(_sigma(t), _sigma(t_next), run.eta)
    landing = torch.minimum(t_end, _t(sigma_down))
    return landing, (_sigma(t_next) ** 2 - _sigma(landing) ** 2) ** 0.5


def sample_dpm_fast(run: SamplingRun, x: torch.Tensor, sigma_min: float, sigma_max: float, n: int) -> torch.Tensor:
    """n model evaluations split into order-3 steps (then 2/1) on a uniform grid in t."""
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("DPM fast needs sigma_min and sigma_max > 0")
    if n < 1:
        raise ValueError(f"DPM fast needs at least 1 step, got {n}")
    t_start, t_end = _t(torch.tensor(sigma_max)), _t(torch.tensor(sigma_min))
    steps = math.floor(n / 3) + 1
    grid = torch.linspace(float(t_start), float(t_end), steps + 1, device=x.device)
    orders = [3] * (steps - 2) + [2, 1] if n % 3 == 0 else [3] * (steps - 1) + [n % 3]
    run.total = len(orders)
    for i, order in enumerate(orders):
        cache = _EpsCache(run)
        t, t_next = grid[i], grid[i + 1]
        landing, noise_scale = _ancestral_target(run, t, t_next, t_end.to(grid))
        denoised = x - _sigma(t) * cache.eps("eps", x, t)
        run.report(i, _sigma(t), _sigma(t), x, denoised)
        step = (_order1, _order2, _order3)[order - 1]
        x = step(cache, x, t, landing)
        # drawn even when eta is 0 (scale 0), as k-diffusion does: keeps the RNG stream aligned
        x = x + noise_scale * run.s_noise * run.noise()
    return x


@dataclass
class _PIDController:
    """PID step size control on the error ratio (k-diffusion's defaults: I-controller, safety 0.81)."""

    h: float
    pcoeff: float
    icoeff: float
    dcoeff: float
    order: float
    accept_safety: float = 0.81
    eps: float = 1e-8
    errors: list[float] = field(default_factory=list)

    def propose_step(self, error: float) -> bool:
        b1 = (self.pcoeff + self.icoeff + self.dcoeff) / self.order
        b2 = -(self.pcoeff + 2 * self.dcoeff) / self.order
        b3 = self.dcoeff / self.order
        inverse = 1 / (float(error) + self.eps)
        if not self.errors:
            self.errors = [inverse, inverse, inverse]
        self.errors[0] = inverse
        factor = self.errors[0] ** b1 * self.errors[1] ** b2 * self.errors[2] ** b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errors[2] = self.errors[1]
            self.errors[1] = self.errors[0]
        self.h *= factor
        return accept


def sample_dpm_adaptive(
    run: SamplingRun,
    x: torch.Tensor,
    sigma_min: float,
    sigma_max: float,
    order: int = 3,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
) -> torch.Tensor:
    """Embedded order 2/3 pair with a PID step size controller; runs until sigma_min is reached."""
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("DPM adaptive needs sigma_min and sigma_max > 0")
    t_end = _t(torch.tensor(sigma_min)).to(x.device)
    s = _t(torch.tensor(sigma_max)).to(x.device)
    if order not in (2, 3):
        raise ValueError(f"DPM adaptive order must be 2 or 3, got {order}")
    abs_tol, rel_tol = torch.tensor(atol), torch.tensor(rtol)
    controller = _PIDController(h_init, 0.0, 1.0, 0.0, 1.5 if run.eta else order)
    x_prev = x
    step = 0
    while s < t_end - 1e-5:
        cache = _EpsCache(run)
        t = torch.minimum(t_end, s + controller.h)
        landing, noise_scale = _ancestral_target(run, s, t, t_end)
        denoised = x - _sigma(s) * cache.eps("eps", x, s)
        if order == 2:
            x_low, x_high = _order1(cache, x, s, landing), _order2(cache, x, s, landing)
        else:
            x_low, x_high = _order2(cache, x, s, landing, r1=1 / 3), _order3(cache, x, s, landing)
        scale = torch.maximum(abs_tol.to(x), rel_tol.to(x) * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / scale) / x.numel() ** 0.5
        if controller.propose_step(float(error)):
            x_prev = x_low
            x = x_high + noise_scale * run.s_noise * run.noise()
            s = t
        run.total = max(run.total, step + 1)
        run.report(step, _sigma(s), _sigma(s), x, denoised)
        step += 1
    return x
