"""The Vittle bottleneck: per-token Gaussian posteriors over layer-l hidden states.

For a hidden state h of one token, a posterior MLP g (Linear(d, d) -> GELU -> Linear(d, 2d))
gives a mean mu and a log-variance. In training one sample z = mu + sigma * eps is drawn and
(1 - alpha) * h + alpha * z flows on; at inference the sample is replaced by its mean. Visual
tokens and text tokens have their own MLP and their own prior. The KL to the prior is the
regularizer (docs/method.md, after the paper's objective).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from vittle.config import BottleneckConfig

logger = logging.getLogger(__name__)


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """Elementwise KL( N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p)) ), broadcasting.

    0.5 * (logvar_p - logvar_q - 1 + ((mu_q - mu_p)^2 + exp(logvar_q)) / exp(logvar_p)).
    This is the exact closed form; the authors' code uses half the log-variance in place of
    the full one, which moves the optimum variance from 1 to 0.5 (see docs/method.md).
    """
    return 0.5 * (logvar_p - logvar_q - 1.0 + ((mu_q - mu_p).pow(2) + logvar_q.exp()) * torch.exp(-logvar_p))


def clamp_straight_through(values: torch.Tensor, limit: float) -> torch.Tensor:
    """`values` clamped to [-limit, limit] in the forward pass, with the gradient passed
    through unchanged, as the authors' in-place `.data.clamp_()` does (a plain `clamp()`
    would zero the gradient outside the range, so a log-variance pushed past the limit could
    never be pulled back by the loss)."""
    return values + (values.clamp(-limit, limit) - values).detach()


class PosteriorMLP(nn.Module):
    """g(h) -> (mu, logvar): Linear(d, d), GELU, Linear(d, 2d); log-variance clamped."""

    def __init__(self, hidden_size: int, logvar_clamp: float, init_std: float = 0.02):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, 2 * hidden_size)
        self.logvar_clamp = logvar_clamp
        for layer in (self.fc1, self.fc2):  # the LLM's own initialisation (Llama: N(0, 0.02), zero bias)
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)

    def raw(self, hidden: torch.Tensor) -> torch.Tensor:
        """The unsplit, unclamped (..., 2d) output."""
        return self.fc2(F.gelu(self.fc1(hidden)))

    def split(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = raw.chunk(2, dim=-1)
        return mu, clamp_straight_through(logvar, self.logvar_clamp)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.raw(hidden))


class GaussianPrior(nn.Module):
    """A diagonal Gaussian shared by all tokens of one modality: N(0, I) or learnable. A
    learnable log-variance is clamped like the posterior's (the authors clamp both)."""

    def __init__(self, hidden_size: int, learnable: bool, logvar_clamp: float):
        super().__init__()
        self.logvar_clamp = logvar_clamp
        if learnable:
            self.mean = nn.Parameter(torch.zeros(hidden_size))
            self.logvar = nn.Parameter(torch.zeros(hidden_size))
        else:  # fixed N(0, I): nothing to save
            self.register_buffer("mean", torch.zeros(hidden_size), persistent=False)
            self.register_buffer("logvar", torch.zeros(hidden_size), persistent=False)

    def clamped_logvar(self) -> torch.Tensor:
        return clamp_straight_through(self.logvar, self.logvar_clamp)


@dataclass
class BottleneckState:
    """One forward of the bottleneck: what it saw, what it produced and with which alpha. The one
    record a caller reads: `outputs.vittle` of `model(**inputs)`, or the list `record_states()`
    yields (for `run_to_layer`, `generate` and the like); the module keeps none. Shapes: (batch,
    seq, d) for tensors over tokens, (batch, seq) for the mask. Its KL per modality:
    `bottleneck.kl_terms(state=...)`."""

    hidden: torch.Tensor
    """The layer-l output before the bottleneck."""
    output: torch.Tensor
    """What flowed on into layer l + 1."""
    mu: torch.Tensor
    logvar: torch.Tensor
    visual_mask: torch.Tensor
    """True where the token is an image token."""
    alpha: float = 0.0
    """The alpha this forward used (0: the plain model's computation)."""


_RECORDING: ContextVar[list[BottleneckState] | None] = ContextVar("vittle_bottleneck_states", default=None)


@contextmanager
def record_states() -> Iterator[list[BottleneckState]]:
    """Collect the state of every bottleneck forward run inside the block, in this thread (or
    asyncio task) only, into the yielded list; the module keeps nothing.

        with record_states() as states:
            model(**inputs)
        kl_v, kl_t = bottleneck.kl_terms(state=states[-1])

    This is what makes concurrent calls on one model safe: each caller reads its own forward's
    posterior, and the module holds no state between forwards."""
    states: list[BottleneckState] = []
    token = _RECORDING.set(states)
    try:
        yield states
    finally:
        _RECORDING.reset(token)


class VittleBottleneck(nn.Module):
    """The two posterior MLPs and their priors. Attached to a model by `vittle.attach_bottleneck`.

    With `kind="noise"` (the control) there are no MLPs: every token's posterior is the prior
    N(0, I) itself, so the KL is exactly 0 and the sample is pure noise."""

    def __init__(self, config: BottleneckConfig, hidden_size: int, init_std: float = 0.02):
        super().__init__()
        self.config = config
        self.visual: PosteriorMLP | None = None
        self.text: PosteriorMLP | None = None
        if config.kind == "ib":
            self.visual = PosteriorMLP(hidden_size, config.logvar_clamp, init_std)
            self.text = PosteriorMLP(hidden_size, config.logvar_clamp, init_std)
        learnable = config.prior == "learnable"
        self.visual_prior = GaussianPrior(hidden_size, learnable, config.logvar_clamp)
        self.text_prior = GaussianPrior(hidden_size, learnable, config.logvar_clamp)
        self._train_alpha = 0.0
        self._scheduled = False
        self._warned_unscheduled = False
        self.inference_alpha: float | None = None
        self._hook_handles: list[RemovableHandle] = []  # set by vittle.attach_bottleneck
        """Overrides alpha_max in eval mode when set (0.0 switches the bottleneck off)."""
        self._forwards = threading.local()
        """Per thread, a stack of the model forwards in progress (`open_forward`), each collecting
        its bottleneck states for the model's output (`outputs.vittle`)."""

    @property
    def train_alpha(self) -> float:
        """alpha in training mode; the trainer (or `vittle.schedule_alpha`) sets it from the
        schedule every step. Training while it was never set warns once: the bottleneck then
        does nothing."""
        return self._train_alpha

    @train_alpha.setter
    def train_alpha(self, value: float) -> None:
        self._train_alpha = float(value)
        self._scheduled = True

    @property
    def alpha(self) -> float:
        if self.training:
            return self.train_alpha
        return self.config.alpha_max if self.inference_alpha is None else self.inference_alpha

    def posterior(self, hidden: torch.Tensor, visual_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu and logvar for every token, each token through its own modality's MLP only (the
        noise control: the prior's 0 and 0 for every token)."""
        if self.visual is None or self.text is None:
            zeros = torch.zeros_like(hidden)
            return zeros, zeros
        flat_mask = visual_mask.reshape(-1)
        visual_index = flat_mask.nonzero().squeeze(1)
        if visual_index.numel() == 0:  # text only, e.g. every cached generation step
            mu, logvar = self.text(hidden)
            if self.training and torch.is_grad_enabled():
                # An exact 0 that still routes a (zero) gradient to the visual MLP, so DDP
                # without find_unused_parameters accepts text-only micro-batches.
                mu = mu + 0.0 * self.visual.raw(hidden.reshape(-1, hidden.shape[-1])[:1]).sum()
            return mu.to(hidden.dtype), logvar.to(hidden.dtype)
        text_index = (~flat_mask).nonzero().squeeze(1)
        flat = hidden.reshape(-1, hidden.shape[-1])
        raw = flat.new_empty(flat.shape[0], 2 * flat.shape[1])
        raw = raw.index_copy(0, visual_index, self.visual.raw(flat.index_select(0, visual_index)))
        if text_index.numel():
            raw = raw.index_copy(0, text_index, self.text.raw(flat.index_select(0, text_index)))
        mu, logvar = self.text.split(raw.view(*hidden.shape[:-1], -1))  # both MLPs clamp alike
        return mu.to(hidden.dtype), logvar.to(hidden.dtype)

    def token_scale(self, hidden: torch.Tensor) -> torch.Tensor | None:
        """Per-token rms(h), (batch, seq, 1), with scale="rms"; None otherwise. No gradient
        flows through the scale."""
        if self.config.scale != "rms":
            return None
        return hidden.detach().float().pow(2).mean(dim=-1, keepdim=True).add(1e-6).sqrt().to(hidden.dtype)

    def forward(self, hidden: torch.Tensor, visual_mask: torch.Tensor) -> torch.Tensor:
        """The state that flows on into layer l + 1; the forward's `BottleneckState` goes to the
        model's output (`outputs.vittle`) and to any `record_states()` block of this thread."""
        state = self.run(hidden, visual_mask)
        recording = _RECORDING.get()
        if recording is not None:
            recording.append(state)
        stack = getattr(self._forwards, "stack", None)
        if stack:
            stack[-1].append(state)
        return state.output

    def open_forward(self) -> None:
        """A model forward begins in this thread (the model's pre-hook, `vittle.model`)."""
        stack = getattr(self._forwards, "stack", None)
        if stack is None:
            stack = self._forwards.stack = []
        stack.append([])

    def close_forward(self) -> BottleneckState | None:
        """The model forward that `open_forward` began ends: its last bottleneck state (None if
        the bottleneck did not run)."""
        stack = getattr(self._forwards, "stack", None)
        states = stack.pop() if stack else []
        return states[-1] if states else None

    def run(self, hidden: torch.Tensor, visual_mask: torch.Tensor) -> BottleneckState:
        """The bottleneck on layer l's output: the typed record of this forward (its `output`
        is what flows on). Records nothing anywhere (`forward` does)."""
        if visual_mask.shape != hidden.shape[:2]:
            raise ValueError(f"visual mask of shape {tuple(visual_mask.shape)} does not match hidden states {tuple(hidden.shape)}")
        if self.training and not self._scheduled and not self._warned_unscheduled:
            self._warned_unscheduled = True
            logger.warning("the Vittle bottleneck is training with alpha 0 because no schedule ever set it: it changes "
                           "nothing and adds no KL. Train with vittle.VittleTrainer, or each step call "
                           "vittle.schedule_alpha(model, step / total_steps) and add the KL of vittle.vittle_loss")
        scale = self.token_scale(hidden)
        mu, logvar = self.posterior(hidden if scale is None else hidden / scale, visual_mask)
        alpha = self.alpha
        if alpha == 0.0:
            output = hidden  # exact no-op: the plain model's computation
        else:
            if self.training:
                sample = torch.addcmul(mu, torch.exp(0.5 * logvar), torch.randn_like(mu))
            else:
                sample = mu
            if scale is not None:
                sample = sample * scale
            output = torch.lerp(hidden, sample, alpha)  # (1 - alpha) * h + alpha * z
        return BottleneckState(hidden, output, mu, logvar, visual_mask, float(alpha))

    def token_kl(self, state: BottleneckState | None = None) -> torch.Tensor:
        """Elementwise KL to each token's prior of a forward's `state`, in float32, shape (batch, seq, d)."""
        state = _required(state)
        mu, logvar = state.mu.float(), state.logvar.float()
        if self.config.prior == "fixed":  # both priors are N(0, I): no per-token selection
            return gaussian_kl(mu, logvar, self.text_prior.mean, self.text_prior.logvar)
        vm = state.visual_mask.unsqueeze(-1)
        prior_mean = torch.where(vm, self.visual_prior.mean.float(), self.text_prior.mean.float())
        prior_logvar = torch.where(vm, self.visual_prior.clamped_logvar().float(), self.text_prior.clamped_logvar().float())
        return gaussian_kl(mu, logvar, prior_mean, prior_logvar)

    def kl_terms(self, text_scope: torch.Tensor | None = None, state: BottleneckState | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL_v, KL_t) of a forward's `state` (`outputs.vittle`, or one of `record_states()`):
        mean elementwise KL over visual tokens and over the text tokens in `text_scope` (a
        (batch, seq) bool mask; None: all text tokens). An empty set gives 0."""
        state = _required(state)
        kl = self.token_kl(state).mean(dim=-1)  # (batch, seq)
        text_mask = ~state.visual_mask
        if text_scope is not None:
            text_mask = text_mask & text_scope.to(text_mask.device)
        return _masked_mean(kl, state.visual_mask), _masked_mean(kl, text_mask)



def _required(state: BottleneckState | None) -> BottleneckState:
    if state is None:
        raise ValueError("no bottleneck state given: pass the forward's own, `outputs.vittle` of model(**inputs) "
                         "(or one of the states `vittle.bottleneck.record_states()` yields); the module keeps none")
    return state


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum()
    if int(count) == 0:
        return values.sum() * 0.0  # keeps the graph and device
    return (values * mask).sum() / count
