"""ROSS's reconstruction objective for training (Wang et al., "Reconstructive Visual Instruction
Tuning", ICLR 2025), in its regression form.

At the image-token positions the LLM's last hidden states go through a small head that is asked to
reconstruct the image's own latent tokens: the visual embeddings that the family's vision tower
and projector placed at those positions in the decoder's input, taken detached (the target moves
only with the projector, the tower is frozen). Every family writes its image features into the
decoder's `inputs_embeds` one token per position, so one rule serves all eight. The loss is the
mean squared error divided by the target's mean square (1.0 is the error of predicting zeros), so
`reconstruction.weight` means the same on every family and width:

    loss = CE + reconstruction.weight * |head(h_img) - sg(e_img)|^2 / |sg(e_img)|^2

ROSS's denoising form (a small diffusion denoiser conditioned on these outputs) is not built here.
The head trains with the model and is dropped before the final model is saved (`detach_reconstruction`):
it never reaches inference or an exported checkpoint. Mid-run `checkpoint-N` folders keep its
weights (`vittle_reconstruction.*`), so a resumed run continues with it.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from vittle.families import VisionLanguageModel, _base, backbone, text_config, visual_mask

HEAD_ATTR = "vittle_reconstruction"


class ReconstructionHead(nn.Module):
    """Linear -> GELU -> Linear from the LLM's width back to it."""

    def __init__(self, width: int, hidden: int, init_std: float = 0.02):
        super().__init__()
        self.up, self.act, self.down = nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width)
        for layer in (self.up, self.down):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)
        self.loss_weight = 1.0
        self._pending = threading.local()
        self._hook_handles: list[RemovableHandle] = []

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(hidden)))

    def take(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """This thread's last forward's (LLM outputs, targets) at the image positions, once."""
        pair = getattr(self._pending, "pair", None)
        self._pending.pair = None
        return pair


def get_reconstruction(model: VisionLanguageModel) -> ReconstructionHead | None:
    return getattr(_base(model), HEAD_ATTR, None)


def attach_reconstruction(model: VisionLanguageModel, hidden: int = 0, weight: float = 1.0) -> ReconstructionHead:
    """Add the head (width `hidden`, 0: the LLM's hidden size; its loss weighed `weight`) and the
    hooks that record, per forward, the decoder's image-position inputs (the target) and last
    hidden states."""
    base = _base(model)
    if get_reconstruction(base) is not None:
        raise ValueError("this model already has a reconstruction head")
    text = text_config(base)
    width = text.hidden_size
    reference = next(p for p in base.get_decoder().parameters() if p.is_floating_point())
    head = ReconstructionHead(width, hidden or width, getattr(text, "initializer_range", 0.02)).to(reference.device, reference.dtype)
    head.train(base.training)
    head.loss_weight = weight
    base.add_module(HEAD_ATTR, head)
    state = head._pending

    def record_tokens(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        state.mask = visual_mask(base, input_ids=input_ids, inputs_embeds=kwargs.get("inputs_embeds"))

    def record_targets(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        embeds, mask = kwargs.get("inputs_embeds"), getattr(state, "mask", None)
        state.target = embeds[mask.to(embeds.device)].detach() if embeds is not None and mask is not None \
            and mask.shape == embeds.shape[:2] else None

    def record_outputs(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        target, mask = getattr(state, "target", None), getattr(state, "mask", None)
        state.target = state.mask = None
        if target is None or mask is None:
            return
        last = output[0] if isinstance(output, tuple) else output.last_hidden_state
        state.pair = (last[mask.to(last.device)], target)

    decoder = base.get_decoder()
    head._hook_handles = [backbone(base).register_forward_pre_hook(record_tokens, with_kwargs=True),
                          decoder.register_forward_pre_hook(record_targets, with_kwargs=True),
                          decoder.register_forward_hook(record_outputs, with_kwargs=True)]
    return head


def detach_reconstruction(model: VisionLanguageModel) -> ReconstructionHead | None:
    """Remove the head and its hooks (before the final save); returns it, or None if none."""
    base = _base(model)
    head = get_reconstruction(base)
    if head is None:
        return None
    for handle in head._hook_handles:
        handle.remove()
    delattr(base, HEAD_ATTR)
    return head


def reconstruction_loss(model: VisionLanguageModel) -> torch.Tensor | None:
    """The relative reconstruction error of the forward that just ran (None without a head).
    A batch without images gives 0 with a path to every head weight, so data parallelism
    without the search for unused parameters sees each of them every step."""
    head = get_reconstruction(model)
    if head is None:
        return None
    pair = head.take()
    if pair is None or pair[0].numel() == 0:
        return torch.stack([p.sum() for p in head.parameters()]).sum() * 0.0
    outputs, target = pair
    predicted = head(outputs.to(next(head.parameters()).dtype)).float()
    target = target.float()
    return (predicted - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)
