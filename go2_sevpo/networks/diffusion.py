"""The DDPM diffusion actor shared by SEVPO and FISOR (the IDQL backbone, paper Table 8).

A noise-prediction network eps_theta(a_t, s, t) is trained with the denoising loss of eq. 13
(optionally weighted per row) and sampled with the DDPM reverse process:

    forward:  a_t = sqrt(alpha_bar_t) a + sqrt(1 - alpha_bar_t) eps,        eps ~ N(0, I)
    reverse:  a_{t-1} = (a_t - (1 - alpha_t) / sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_t)
                        + sqrt(beta_t) z  (z ~ N(0, I), no noise on the last step),
              clipped to [-1, 1] after every step.

Time steps are indices t in {0, ..., T-1}; the network sees t as a float through a learnable
Fourier embedding. Every random draw takes an explicit `torch.Generator` so runs are reproducible.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from go2_sevpo.networks.mlp import detached_tensors, dropout_off


@dataclass
class DiffusionConfig:
    steps: int = 5  # T, number of denoising steps (Table 8)
    beta_min: float = 0.1  # VP schedule bounds
    beta_max: float = 10.0
    hidden_dim: int = 256  # width of the residual trunk
    num_blocks: int = 3  # residual blocks, each Linear(hidden, 4 hidden) -> Mish -> Linear(4 hidden, hidden)
    dropout: float = 0.1  # inside each block, before the LayerNorm (training only)
    time_dim: int = 64  # learnable Fourier features of t
    time_hidden: list[int] = field(default_factory=lambda: [128, 128])  # MLP after the Fourier features
    clip_actions: bool = True  # clip to [-1, 1] at every denoising step
    # Run the reverse process as one torch.compile'd graph (inductor fuses the element-wise work of
    # all T steps; measured 1.5-2.8x faster on CPU, docs/TRAINING_SPEED.md): "cpu" (default: where it
    # was measured), "always", "never". Same draws as eager, results equal to float rounding
    # (about 2e-6); TORCHDYNAMO_DISABLE=1 makes every path eager (the tests do).
    compile_sampling: str = "cpu"


def vp_beta_schedule(steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> torch.Tensor:
    """Variance-preserving schedule discretised to `steps` steps: beta_t = 1 - alpha_t with
    alpha_t = exp(-beta_min / T - (beta_max - beta_min) (2t - 1) / (2 T^2)), t = 1..T."""
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    alpha = torch.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / steps**2)
    return (1.0 - alpha).float()


class FourierFeatures(nn.Module):
    """t -> [cos(2 pi t W), sin(2 pi t W)] with a learnable frequency vector W ~ N(0, 0.2^2)."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2:
            raise ValueError("the Fourier embedding needs an even dimension")
        self.freq = nn.Parameter(0.2 * torch.randn(dim // 2))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * t[:, None] * self.freq
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def _mish_ratio(x: torch.Tensor) -> torch.Tensor:
    """tanh(softplus(x)) = n / (n + 2) with n = e^x (e^x + 2), in three new buffers (the rest in
    place): at the hidden sizes here the element-wise passes are memory-bound, so fewer temporaries is
    what makes it fast (same operations in the same order: bit-identical to the out-of-place form)."""
    e = x.clamp(max=20.0).exp_()  # beyond 20, n / (n + 2) == 1 in float32 anyway
    n = (e + 2.0).mul_(e)
    return n.div_(n + 2.0)


class _MishFunction(torch.autograd.Function):
    """Mish with a hand-written backward: autograd through the forward's element-wise ops would run
    a dozen more (and keep their inputs); the closed form needs one pass over saved (x, t)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        t = _mish_ratio(x)
        ctx.save_for_backward(x, t)
        return x * t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, t = ctx.saved_tensors
        # d/dx [x tanh(sp(x))] = tanh(sp(x)) + x sigmoid(x) (1 - tanh(sp(x))^2)
        return grad * torch.addcmul(t, x * torch.sigmoid(x), 1.0 - t * t)


class Mish(nn.Module):
    """x tanh(softplus(x)), written as x n / (n + 2) with n = e^x (e^x + 2) (an identity): the same
    function to float precision, faster on CPU than torch's unvectorised `mish` kernel, with a
    closed-form backward (about 2x faster forward + backward than autograd through the ops). Without
    autograd (sampling: critic targets, acting) it skips the Function and works in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _MishFunction.apply(x)
        return _mish_ratio(x).mul_(x)


class ResidualBlock(nn.Module):
    """x + Linear(Mish(Linear(LayerNorm(Dropout(x)))))."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Dropout(dropout), nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), Mish(), nn.Linear(4 * dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class NoisePredictor(nn.Module):
    """eps_theta(a_t, s, t): [time embedding, s, a_t] -> Linear -> residual blocks -> Mish -> Linear."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: DiffusionConfig):
        super().__init__()
        time_layers: list[nn.Module] = [FourierFeatures(cfg.time_dim)]
        dims = [cfg.time_dim, *cfg.time_hidden]
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            time_layers.append(nn.Linear(d_in, d_out))
            if i < len(dims) - 2:  # no activation after the last layer of the time MLP
                time_layers.append(Mish())
        self.time_embed = nn.Sequential(*time_layers)
        self.inp = nn.Linear(dims[-1] + obs_dim + act_dim, cfg.hidden_dim)
        self.blocks = nn.Sequential(*[ResidualBlock(cfg.hidden_dim, cfg.dropout) for _ in range(cfg.num_blocks)])
        self.out = nn.Sequential(Mish(), nn.Linear(cfg.hidden_dim, act_dim))
        self.register_buffer("time_index", torch.arange(cfg.steps, dtype=torch.float32), persistent=False)

    def forward(self, noisy_action: torch.Tensor, obs: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """t: (B,) time indices, or one int for the whole batch (the reverse process)."""
        if isinstance(t, int):  # one row of the embedding, broadcast: no (B,) index tensor to build
            time = self.time_embed(self.time_index[t:t + 1]).expand(obs.shape[0], -1)
        else:  # t takes only T distinct values: embed those once and gather (the same function)
            time = self.time_embed(self.time_index)[t]
        x = torch.cat([time, obs, noisy_action], dim=-1)
        return self.out(self.blocks(self.inp(x)))


class DiffusionActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, cfg: DiffusionConfig):
        super().__init__()
        self.cfg, self.act_dim = cfg, act_dim
        self.noise_net = NoisePredictor(obs_dim, act_dim, cfg)
        betas = vp_beta_schedule(cfg.steps, cfg.beta_min, cfg.beta_max)
        alphas = 1.0 - betas
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", alphas)
        self.register_buffer("alpha_bars", torch.cumprod(alphas, dim=0))
        # The reverse process's per-step constants as Python floats (no 0-d tensor ops in the loop):
        # a_{t-1} = scale_t (a_t - eps_scale_t eps) + noise_t z.
        alpha_bars = torch.cumprod(alphas.double(), dim=0)
        # (t, scale, eps_scale, noise_scale) from t = T-1 down to 0.
        self._schedule = tuple((t, float(1 / alphas[t].double().sqrt()),
                                float((1 - alphas[t].double()) / (1 - alpha_bars[t]).sqrt()),
                                float(betas[t].double().sqrt())) for t in reversed(range(cfg.steps)))
        if cfg.compile_sampling not in ("cpu", "always", "never"):
            raise ValueError(f"actor.compile_sampling must be cpu, always or never, not {cfg.compile_sampling!r}")

    def forward(self, noisy_action: torch.Tensor, obs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.noise_net(noisy_action, obs, t)

    def add_noise(self, actions: torch.Tensor, generator: torch.Generator):
        """Forward process q(a_t | a): returns (a_t, t, eps) with t ~ U{0..T-1} per row."""
        b = actions.shape[0]
        t = torch.randint(0, self.cfg.steps, (b,), generator=generator, device=actions.device)
        eps = torch.randn(actions.shape, generator=generator, device=actions.device)
        ab = self.alpha_bars[t][:, None]
        return ab.sqrt() * actions + (1.0 - ab).sqrt() * eps, t, eps

    def denoising_error(self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-row ||eps - eps_theta(a_t, s, t)||^2 (summed over action dims), shape (B,): the term
        that eq. 13 and eq. 14 weight."""
        noisy, t, eps = self.add_noise(actions, generator)
        return (eps - self.noise_net(noisy, obs, t)).pow(2).sum(-1)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, generator: torch.Generator, num_samples: int = 1) -> torch.Tensor:
        """DDPM reverse process from pure noise. obs (B, obs_dim) -> actions (B, num_samples, act_dim),
        all B * num_samples chains in one batch. Dropout is off while sampling."""
        b = obs.shape[0]
        obs = obs.repeat_interleave(num_samples, dim=0) if num_samples > 1 else obs
        x, noise = self._draws(b * num_samples, generator, obs.device)
        with dropout_off(self):
            reverse = self._reverse_fn(obs.device, x.shape[0])
            if reverse is reverse_process:
                x = reverse(self.noise_net, obs, x, noise, self._schedule, self.cfg.clip_actions)
            else:  # this actor's tensors on a parameter-free copy of the network, and a contiguous obs:
                # the online and target actors, and batches gathered from the sampler's packed rows,
                # then share one compiled graph (it would otherwise specialise on requires_grad, strides)
                x = reverse(self._skeleton(), obs.contiguous(), x, noise, self._schedule, self.cfg.clip_actions,
                            detached_tensors(self.noise_net))
        return x.view(b, num_samples, self.act_dim)

    def sample_with_grad(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One action per state, (B, act_dim), by the same reverse process (eager, dropout off) but
        differentiable in the network's parameters: the pathwise gradient of an objective of the
        sampled action flows back through all T denoising steps (as in Diffusion-QL; SEVPO's
        `unsafe_update=pathwise`). Clipping passes no gradient where it binds."""
        x, noise = self._draws(obs.shape[0], generator, obs.device)
        with dropout_off(self):
            return reverse_process(self.noise_net, obs, x, noise, self._schedule, self.cfg.clip_actions)

    def _draws(self, rows: int, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Every draw of the reverse process first, in the order it uses them (the start, then z for
        t = T-1 .. 1): the same numbers as drawing inside the loop, and a loop free of generators."""
        shape = (rows, self.act_dim)
        x = torch.randn(shape, generator=generator, device=device)
        return x, [torch.randn(shape, generator=generator, device=device) for _ in range(self.cfg.steps - 1)]

    def _skeleton(self) -> nn.Module:
        """The noise network's structure on the meta device (no storage), kept outside the module tree."""
        if self.__dict__.get("_skeleton_net") is None:
            self.__dict__["_skeleton_net"] = copy.deepcopy(self.noise_net).to("meta").requires_grad_(False)
        return self.__dict__["_skeleton_net"]

    def _reverse_fn(self, device: torch.device, batch: int):
        mode = self.cfg.compile_sampling
        if mode == "never" or (mode == "cpu" and device.type != "cpu") or batch < 2:
            return reverse_process  # (a batch of 0 or 1 rows would make the compiler specialise on it)
        return _compiled_reverse_process


def reverse_process(net: nn.Module, obs: torch.Tensor, x: torch.Tensor, noise: list[torch.Tensor],
                    schedule: tuple, clip: bool, params: dict | None = None) -> torch.Tensor:
    """a_{t-1} = scale_t (a_t - eps_scale_t eps_theta(a_t, s, t)) + noise_scale_t z_t, clipped.
    A pure function of its inputs (the network is an argument, its parameters graph inputs), so one
    compiled graph serves the online, EMA and lagged actors and every batch size. `params`: the
    network's tensors to use instead of its own (torch.func.functional_call)."""
    for t, scale, eps_scale, noise_scale in schedule:
        eps = net(x, obs, t) if params is None else functional_call(net, params, (x, obs, t))
        x = (x - eps_scale * eps) * scale
        if t > 0:
            x = x + noise_scale * noise[len(schedule) - 1 - t]
        if clip:
            x = x.clamp(-1.0, 1.0)
    return x


_compiled = None  # torch.compile(reverse_process), built on first use; False once it failed


def _compiled_reverse_process(*args):
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(reverse_process, dynamic=True, fullgraph=True)
    if _compiled is False:
        return reverse_process(*args)
    try:
        return _compiled(*args)
    except Exception as error:  # no C++ compiler, an unsupported platform: eager is the same function
        warnings.warn(f"torch.compile of the diffusion reverse process failed ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}); sampling eagerly", stacklevel=2)
        _compiled = False
        return reverse_process(*args)
