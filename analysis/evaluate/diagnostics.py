"""Does the posterior carry information? Statistics of the bottleneck on real queries.

For a Vittle model and a set of queries, per modality (image tokens, text tokens):
- `kl`: mean elementwise KL to the prior (nats per dimension);
- `active_share`: the share of dimensions whose KL, averaged over that modality's tokens,
  exceeds 0.01 nats (a collapsed posterior, mu = 0 and variance 1, has none);
- `posterior_variance`: mean posterior variance (1 at the prior);
- `hidden_rms`: root-mean-square of the layer-l hidden state the bottleneck reads;
- `mu_rms`: root-mean-square of the posterior mean.
A baseline (no bottleneck) gets only `hidden_rms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vittle.bottleneck import record_states

ACTIVE_THRESHOLD = 0.01


@torch.no_grad()
def posterior_diagnostics(assistant: Any, images: Sequence[Any], questions: Sequence[str], batch_size: int = 32,
                          threshold: float = ACTIVE_THRESHOLD) -> dict[str, Any]:
    """Run the queries up to the bottleneck layer and summarize its posterior per modality."""
    from vittle.families import visual_mask  # heavy
    from vittle.model import get_bottleneck, run_to_layer  # heavy

    if not questions:
        raise ValueError("no queries to diagnose")
    model = assistant.model
    bottleneck = get_bottleneck(model)
    sums: dict[str, dict[str, Any]] = {m: {"n": 0, "h2": 0.0, "mu2": 0.0, "var": 0.0, "kl_dim": None} for m in ("visual", "text")}
    for start in range(0, len(questions), batch_size):
        inputs = assistant.model_inputs(images[start : start + batch_size], questions[start : start + batch_size])
        with record_states() as states:
            hidden = run_to_layer(model, assistant.layer, **inputs)
        real = inputs["attention_mask"].bool()
        visual = visual_mask(model, inputs["input_ids"]) & real
        masks = {"visual": visual, "text": real & ~visual}
        state = states[-1] if bottleneck is not None and states else None
        source = state.hidden if state is not None else hidden
        kl = bottleneck.token_kl(state) if state is not None else None
        for name, mask in masks.items():
            count = int(mask.sum())
            if not count:
                continue
            acc = sums[name]
            acc["n"] += count
            acc["h2"] += float(source.float()[mask].pow(2).mean(dim=-1).sum())
            if state is not None:
                acc["mu2"] += float(state.mu.float()[mask].pow(2).mean(dim=-1).sum())
                acc["var"] += float(state.logvar.float()[mask].exp().mean(dim=-1).sum())
                per_dim = kl[mask].sum(dim=0).double().cpu()
                acc["kl_dim"] = per_dim if acc["kl_dim"] is None else acc["kl_dim"] + per_dim
    out: dict[str, Any] = {"has_bottleneck": bottleneck is not None, "threshold": threshold}
    for name, acc in sums.items():
        if not acc["n"]:
            continue
        entry = {"tokens": acc["n"], "hidden_rms": (acc["h2"] / acc["n"]) ** 0.5}
        if acc["kl_dim"] is not None:
            per_dim = acc["kl_dim"] / acc["n"]
            entry.update({
                "kl": float(per_dim.mean()),
                "kl_max_dim": float(per_dim.max()),
                "active_share": float((per_dim > threshold).double().mean()),
                "posterior_variance": acc["var"] / acc["n"],
                "mu_rms": (acc["mu2"] / acc["n"]) ** 0.5,
            })
        out[name] = entry
    return out


@torch.no_grad()
def use_diagnostics(assistant: Any, images: Sequence[Any], questions: Sequence[str], batch_size: int = 32) -> dict[str, Any]:
    """Does the answer use what passes the bottleneck layer? Three measures on real queries
    (the KL per dimension says how far the posterior is from the prior, not whether the answer
    reads it):

    - `state_change` (Vittle only), per modality: the mean over tokens of
      ||alpha (mu - h)|| / ||h||, how far the bottleneck moves each token's state at inference.
      A posterior collapsed to the prior gives exactly alpha (the state is only shrunk), as
      does the noise control.
    - `answer_tv` and `answer_flips` (Vittle only): total-variation distance between the
      next-token distributions at the answer position with the bottleneck off (alpha = 0) and
      on (alpha_max), mean over queries, and the share of queries whose greedy first token
      changes.
    - `image_attention` (any model): the share of the answer position's attention that lands on
      image tokens in the layers after the bottleneck layer, mean over heads, layers and queries.
    """
    from vittle.families import language_model as text_decoder  # heavy
    from vittle.families import visual_mask  # heavy
    from vittle.model import bottleneck_alpha, decoder_layers, get_bottleneck  # heavy

    if not questions:
        raise ValueError("no queries to diagnose")
    model = assistant.model
    bottleneck = get_bottleneck(model)
    layers = range(assistant.layer + 1, len(decoder_layers(model)))
    totals: dict[str, float] = {"queries": 0, "tv": 0.0, "flips": 0, "attention": 0.0, "visual_change": 0.0, "visual_tokens": 0,
                                "text_change": 0.0, "text_tokens": 0}
    language_model = text_decoder(model)
    previous = language_model.config._attn_implementation
    language_model.set_attn_implementation("eager")  # sdpa does not return attention weights; the vision tower is left as is
    try:
        for start in range(0, len(questions), batch_size):
            inputs = assistant.model_inputs(images[start : start + batch_size], questions[start : start + batch_size])
            rows = torch.arange(inputs["input_ids"].shape[0], device=inputs["input_ids"].device)
            last = inputs["attention_mask"].sum(dim=1) - 1  # right padding: the answer position
            with record_states() as states:
                outputs = model(**inputs, output_attentions=bool(layers), use_cache=False)
            visual = visual_mask(model, inputs["input_ids"])
            totals["queries"] += len(rows)
            if layers:
                shares = [outputs.attentions[i][rows, :, last].float() for i in layers]  # (batch, heads, seq) each
                on_image = torch.stack([(share * visual[:, None, :]).sum(-1).mean(-1) for share in shares])  # (layers, batch)
                totals["attention"] += float(on_image.mean(0).sum())
            if bottleneck is None:
                continue
            state = states[-1]
            change = (state.output.float() - state.hidden.float()).norm(dim=-1) / state.hidden.float().norm(dim=-1).clamp_min(1e-12)
            real = inputs["attention_mask"].bool()
            for name, mask in (("visual", visual & real), ("text", ~visual & real)):
                totals[f"{name}_change"] += float(change[mask].sum())
                totals[f"{name}_tokens"] += int(mask.sum())
            on = outputs.logits[rows, last].float().softmax(-1)
            with bottleneck_alpha(model, 0.0):
                off = model(**inputs, use_cache=False).logits[rows, last].float().softmax(-1)
            totals["tv"] += float(0.5 * (on - off).abs().sum(-1).sum())
            totals["flips"] += int((on.argmax(-1) != off.argmax(-1)).sum())
    finally:
        language_model.set_attn_implementation(previous)
    n = totals["queries"]
    out: dict[str, Any] = {"queries": n, "layers_after": list(layers),
                           "image_attention": totals["attention"] / n if layers else None}
    if bottleneck is not None:
        out["answer_tv"] = totals["tv"] / n
        out["answer_flips"] = totals["flips"] / n
        for name in ("visual", "text"):
            if totals[f"{name}_tokens"]:
                out[f"{name}_state_change"] = totals[f"{name}_change"] / totals[f"{name}_tokens"]
    return out


COLLAPSED_KL = 1e-3
"""Mean per-token KL (nats per dim) below which one query's posterior counts as collapsed."""


@dataclass
class QueryPosterior:
    """One query's posterior in two numbers per modality (from `Assistant.probe`)."""

    text_variance_mean: float
    text_kl_mean: float
    visual_variance_mean: float | None = None
    """None for a query without image tokens."""
    visual_kl_mean: float | None = None

    @classmethod
    def from_probe(cls, probe: Any) -> QueryPosterior | None:
        """None for a model without a bottleneck."""
        if not probe.has_bottleneck:
            return None
        visual = probe.visual_variance is not None and len(probe.visual_variance) > 0
        return cls(text_variance_mean=float(np.mean(probe.text_variance)), text_kl_mean=float(np.mean(probe.text_kl)),
                   visual_variance_mean=float(np.mean(probe.visual_variance)) if visual else None,
                   visual_kl_mean=float(np.mean(probe.visual_kl)) if visual else None)

    @property
    def kl_means(self) -> dict[str, float]:
        """{"visual"?, "text"}: mean KL to the prior per dimension, over each modality's tokens."""
        means = {"visual": self.visual_kl_mean, "text": self.text_kl_mean}
        return {name: value for name, value in means.items() if value is not None}

    @property
    def collapsed(self) -> bool:
        return max(self.kl_means.values()) < COLLAPSED_KL
