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
from typing import Any

import torch

ACTIVE_THRESHOLD = 0.01


@torch.no_grad()
def posterior_diagnostics(assistant: Any, images: Sequence[Any], questions: Sequence[str], batch_size: int = 32,
                          threshold: float = ACTIVE_THRESHOLD) -> dict[str, Any]:
    """Run the queries up to the bottleneck layer and summarize its posterior per modality."""
    from vittle.model import get_bottleneck, run_to_layer

    if not questions:
        raise ValueError("no queries to diagnose")
    model = assistant.model
    bottleneck = get_bottleneck(model)
    sums: dict[str, dict[str, Any]] = {m: {"n": 0, "h2": 0.0, "mu2": 0.0, "var": 0.0, "kl_dim": None} for m in ("visual", "text")}
    image_token = model.config.image_token_id
    for start in range(0, len(questions), batch_size):
        inputs = assistant._batch(images[start : start + batch_size], questions[start : start + batch_size])
        hidden = run_to_layer(model, assistant.layer, **inputs)
        real = inputs["attention_mask"].bool()
        visual = (inputs["input_ids"] == image_token) & real
        masks = {"visual": visual, "text": real & ~visual}
        state = bottleneck.last if bottleneck is not None else None
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
