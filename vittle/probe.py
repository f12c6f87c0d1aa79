"""What a model holds at the bottleneck layer for a query: `ProbeResult` and `probe_batch`
(behind `Assistant.probe` and `Assistant.probe_batch`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from vittle.bottleneck import record_states
from vittle.data import as_image
from vittle.families import visual_mask
from vittle.model import get_bottleneck, run_to_layer
from vittle.token_grid import TokenGrid


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
    grid: TokenGrid | None
    """The run of the image tokens that rasters the image, and the part of the image it covers
    (`vittle.token_grid`: all of LLaVA-1.5's, the base image's of LLaVA-NeXT, the global image's
    of Idefics3...); None without an image, or where the family's tokens form no raster."""
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

    def on_grid(self, per_token: Any) -> np.ndarray | None:
        """(rows, cols) of a per-image-token array (`visual_variance`, `visual_kl`) on `grid`."""
        return None if self.grid is None or per_token is None else self.grid.values(per_token)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grid"] = self.grid.to_dict() if self.grid is not None else None
        data["text_tokens"] = self.text_tokens
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in data.items()}


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
    grids = [assistant.images.grid(image) if image is not None else None for image in map(as_image, images)]
    state = states[-1] if states and assistant.has_bottleneck else None
    if state is not None:
        variance = state.logvar.float().exp().mean(dim=-1).cpu().numpy()
        bottleneck = get_bottleneck(assistant.model)
        assert bottleneck is not None  # has_bottleneck
        kl = bottleneck.token_kl(state).mean(dim=-1).cpu().numpy()
        masks = state.visual_mask.cpu().numpy()
    results = []
    for row, length in enumerate(lengths):
        ids = inputs["input_ids"][row, :length]
        after = hidden[row, length - 1].float().cpu().numpy()
        visual = visual_rows[row, :length].nonzero().flatten().tolist()
        grid = grids[row] if visual else None
        result = ProbeResult(layer=assistant.layer, hidden_before=after, hidden_after=after,
                             tokens=assistant.processor.tokenizer.convert_ids_to_tokens(ids.tolist()), visual_positions=visual,
                             grid=grid, has_bottleneck=assistant.has_bottleneck)
        if state is not None:
            result.hidden_before = state.hidden[row, length - 1].float().cpu().numpy()
            mask = masks[row, :length]
            result.visual_variance, result.text_variance = variance[row, :length][mask], variance[row, :length][~mask]
            result.visual_kl, result.text_kl = kl[row, :length][mask], kl[row, :length][~mask]
        results.append(result)
    return results
