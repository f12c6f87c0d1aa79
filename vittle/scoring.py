"""Scoring candidate answers by full-sequence log-prob (behind `Assistant.answer_logprobs` and
`Assistant.answer_distribution`).

The prompts run once (left-padded, one forward that keeps its KV cache); the cache is then
repeated for every candidate, and all candidates of all queries run in one more forward. A
candidate's tokens are those the model writes after "ASSISTANT:", its end token included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vittle.distribution import AnswerDistribution, unique_answers
from vittle.families import visual_token_ids
from vittle.template import ASSISTANT


def answer_end(chat: Any, tokenizer: Any) -> str:
    """What closes an answer in training: the chat format's end of turn ("<|im_end|>",
    "<end_of_turn>", ...), or the tokenizer's end token (vicuna-v1's "</s>")."""
    return getattr(chat, "end", "") or tokenizer.eos_token


def answer_ids(tokenizer: Any, answer: str, head_text: str = f"{ASSISTANT}:", end: str | None = None) -> list[int]:
    """The token ids of `answer` as the model writes it after the prompt's end `head_text`
    (vicuna-v1's "ASSISTANT:"), its closing `end` included (default: the tokenizer's end token;
    tokenized in that context, so a tokenizer that merges the leading space gets it right)."""
    end = end or tokenizer.eos_token
    head = tokenizer(head_text, add_special_tokens=False)["input_ids"]
    space = " " if head_text.endswith(":") else ""
    full = tokenizer(f"{head_text}{space}{answer}{end}", add_special_tokens=False)["input_ids"]
    if full[: len(head)] == head:
        return full[len(head):]
    return tokenizer(f" {answer}{end}", add_special_tokens=False)["input_ids"]


@torch.no_grad()
def prompt_pass(assistant: Any, images: Sequence[Any], questions: Sequence[str]) -> tuple[torch.Tensor, Any, torch.Tensor, dict[str, Any]]:
    """Run the prompts once, left-padded: (log-probs of the first answer token (N, V), the KV
    cache, the attention mask, the inputs)."""
    inputs = assistant.model_inputs(images, questions, "left")
    mask = inputs["attention_mask"]
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    out = assistant.model(**inputs, position_ids=positions, use_cache=True)
    return torch.log_softmax(out.logits[:, -1].float(), dim=-1), out.cache, mask, inputs


@torch.no_grad()
def score(assistant: Any, first: torch.Tensor, cache: Any, mask: torch.Tensor, targets: list[list[int]]) -> np.ndarray:
    """(N, K) full-sequence log-probs of K token sequences after N prompts whose `prompt_pass`
    gave `first`, `cache` and `mask`: the cache is repeated per candidate and every candidate
    of every prompt runs in one forward."""
    device = first.device
    n, k = first.shape[0], len(targets)
    lengths = torch.tensor([len(t) for t in targets], device=device)
    width = int(lengths.max())
    tokens = torch.full((k, width), assistant.pad_token_id, dtype=torch.long, device=device)
    for row, ids in enumerate(targets):
        tokens[row, : len(ids)] = torch.tensor(ids, device=device)
    scores = first[:, tokens[:, 0]]  # (N, K): the first token comes from the prompt's last position
    if width > 1:
        rows = torch.arange(n, device=device).repeat_interleave(k)
        cache.batch_select_indices(rows)
        inputs = tokens.repeat(n, 1)[:, :-1]  # (N*K, width - 1): each token predicts the next
        start = mask.sum(1)[rows]
        valid = (torch.arange(width - 1, device=device)[None] < (lengths - 1).repeat(n)[:, None]).long()
        logits = assistant.model(input_ids=inputs, attention_mask=torch.cat([mask[rows], valid], dim=1),
                                 position_ids=start[:, None] + torch.arange(width - 1, device=device)[None],
                                 cache=cache, use_cache=True).logits.float()
        picked = torch.log_softmax(logits, dim=-1).gather(2, tokens.repeat(n, 1)[:, 1:, None])[..., 0]
        scores = scores + (picked * valid).sum(1).view(n, k)
    return scores.cpu().numpy().astype(np.float64)


@torch.no_grad()
def continuations(assistant: Any, images: Sequence[Any], questions: Sequence[str], first: torch.Tensor, top_k: int,
                  max_new_tokens: int) -> list[str]:
    """The greedy answers that start with each query's `top_k` most likely first tokens (the
    end token and the image token left out): what the model would say if it began otherwise."""
    tokenizer = assistant.processor.tokenizer
    banned = {*visual_token_ids(assistant.model), tokenizer.eos_token_id,
              tokenizer.convert_tokens_to_ids(answer_end(assistant.family.chat, tokenizer))}  # an empty answer is no candidate
    starts: list[tuple[int, int]] = []
    for row in range(first.shape[0]):
        for token in torch.argsort(first[row], descending=True)[: top_k + len(banned)].tolist():
            if token not in banned and sum(1 for r, _ in starts if r == row) < top_k:
                starts.append((row, token))
    inputs = assistant.model_inputs([images[r] for r, _ in starts], [questions[r] for r, _ in starts], "left")
    column = torch.tensor([[t] for _, t in starts], device=inputs["input_ids"].device)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], column], dim=1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(column)], dim=1)
    settings = assistant._greedy(max(1, max_new_tokens - 1))
    output = assistant.model.generate(**inputs, **settings)[:, inputs["input_ids"].shape[1] - 1:]
    return unique_answers(assistant.processor.tokenizer.batch_decode(output, skip_special_tokens=True))


def answer_distributions(assistant: Any, images: Sequence[Any], questions: Sequence[str], candidates: Sequence[str] = (),
                         top_k: int = 0, max_new_tokens: int = 8) -> list[AnswerDistribution]:
    """Each query's `AnswerDistribution` over the same candidates: `candidates`, plus (top_k > 0)
    the greedy continuations of every query's top_k first tokens."""
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    if top_k < 0:
        raise ValueError(f"top_k={top_k} must be >= 0")
    answers = unique_answers(candidates)
    if not questions:
        return []
    if not answers and top_k == 0:
        raise ValueError("no candidate answers: give candidates or top_k > 0")
    first, cache, mask, _ = prompt_pass(assistant, images, questions)
    if top_k:
        answers = unique_answers([*answers, *continuations(assistant, images, questions, first, top_k, max_new_tokens)])
    tokenizer = assistant.processor.tokenizer
    head = assistant.family.chat.answer_head
    end = answer_end(assistant.family.chat, tokenizer)
    scores = score(assistant, first, cache, mask, [answer_ids(tokenizer, answer, head, end) for answer in answers])
    return [AnswerDistribution(list(answers), row.tolist()) for row in scores]
