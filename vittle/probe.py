"""What a model holds at the bottleneck layer for a query: `ProbeResult` and `probe_batch`
(behind `Assistant.probe` and `Assistant.probe_batch`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from vittle.bottleneck import record_states
from vittle.families import image_grids, visual_mask
from vittle.model import get_bottleneck, run_to_layer


@dataclass
class ProbeResult:
    """What the model holds at the bottleneck layer for one query. Arrays are float32."""

    layer: int
    hidden_before: np.ndarray
    """(d,) last input token's layer-l state before the bottleneck."""
    hidden_after: np.ndarray
    """(d,) the same after the bottleneck (equal to hidden_before for a plain model)."""
    tokens: list[str]
    """Every input token as a string (image tokens included)."""
    visual_positions: list[int]
    """Indices into `tokens` of the image tokens."""
    grid: tuple[int, int] | None
    """(rows, cols) of the image tokens, None without an image (a dynamic-resolution family's
    grid from its `image_grid_thw`; else the square of the count, or one row)."""
    has_bottleneck: bool
    visual_variance: np.ndarray | None = None
    """(n_visual,) posterior variance per image token, mean over dims."""
    text_variance: np.ndarray | None = None
    """(n_text,) the same for text tokens, in order."""
    visual_kl: np.ndarray | None = None
    """(n_visual,) KL to the prior per image token, mean over dims."""
    text_kl: np.ndarray | None = None

    @property
    def text_tokens(self) -> list[str]:
        visual = set(self.visual_positions)
        return [token for index, token in enumerate(self.tokens) if index not in visual]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["text_tokens"] = self.text_tokens
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in data.items()}


def _grid(count: int) -> tuple[int, int]:
    side = math.isqrt(count)
    return (side, side) if side * side == count else (1, count)


@torch.no_grad()
def probe_batch(assistant: Any, images: Sequence[Any], questions: Sequence[str]) -> list[ProbeResult]:
    """`Assistant.probe_batch`: several queries in one forward, up to the bottleneck layer."""
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    if not questions:
        return []
    inputs = assistant.model_inputs(images, questions)
    with record_states() as states:  # this call's posterior: concurrent probes do not read each other's
        hidden = run_to_layer(assistant.model, assistant.layer, **inputs)
    lengths = inputs["attention_mask"].sum(dim=1).tolist()
    visual_rows = visual_mask(assistant.model, inputs["input_ids"])
    grids = iter(image_grids(assistant.model, inputs) or [])
    state = states[-1] if states and assistant.has_bottleneck else None
    if state is not None:
        variance = state.logvar.float().exp().mean(dim=-1).cpu().numpy()
        kl = get_bottleneck(assistant.model).token_kl(state).mean(dim=-1).cpu().numpy()
        masks = state.visual_mask.cpu().numpy()
    results = []
    for row, length in enumerate(lengths):
        ids = inputs["input_ids"][row, :length]
        after = hidden[row, length - 1].float().cpu().numpy()
        visual = visual_rows[row, :length].nonzero().flatten().tolist()
        grid = next(grids, None) if visual else None
        result = ProbeResult(layer=assistant.layer, hidden_before=after, hidden_after=after,
                             tokens=assistant.processor.tokenizer.convert_ids_to_tokens(ids.tolist()), visual_positions=visual,
                             grid=(grid or _grid(len(visual))) if visual else None, has_bottleneck=assistant.has_bottleneck)
        if state is not None:
            result.hidden_before = state.hidden[row, length - 1].float().cpu().numpy()
            mask = masks[row, :length]
            result.visual_variance, result.text_variance = variance[row, :length][mask], variance[row, :length][~mask]
            result.visual_kl, result.text_kl = kl[row, :length][mask], kl[row, :length][~mask]
        results.append(result)
    return results
