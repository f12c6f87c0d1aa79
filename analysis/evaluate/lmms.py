"""An lmms-eval model class for vittle checkpoints: `--model vittle`, bottleneck included.

lmms-eval's own `llava_hf` loads a Vittle checkpoint as a plain LLaVA (transformers drops the
bottleneck with one log line), so its numbers would be the baseline's. This class loads the
checkpoint with `Assistant.load`, which attaches the bottleneck, and answers through the same
prompt template as every vittle command:

    pip install lmms-eval             # not a vittle dependency: it pulls many packages
    lmms-eval --model vittle --model_args pretrained=runs/vittle-7b-f,batch_size=8 --tasks pope,mme

The class is found through the entry point `lmms_eval.models: vittle` of this package (lmms-eval
reads that group). It implements `generate_until` (greedy; `until` stop strings and
`max_new_tokens` honoured; a request to sample is answered greedily with a warning) and
`loglikelihood` (the continuation's log-probability after the prompt and whether it is the
greedy continuation); multi-round generation is refused with a clear error. Without
lmms-eval installed the class still works on objects with the same `args` tuples (tested so).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from vittle.template import IMAGE_PLACEHOLDER

logger = logging.getLogger(__name__)


def _base() -> type:
    try:
        from lmms_eval.api.model import lmms  # optional
    except ImportError:
        return object
    return lmms


def manifest() -> Any:
    """The entry point's payload: lmms-eval's ModelManifest for `vittle`."""
    from lmms_eval.models.registry_v2 import ModelManifest  # optional

    return ModelManifest(model_id="vittle", simple_class_path="vittle.analysis.evaluate.lmms.Vittle")


def _first_image(visuals: Any) -> Any:
    """The one image of a request (vittle's models take one), or None."""
    if visuals is None:
        return None
    items = list(visuals) if isinstance(visuals, (list, tuple)) else [visuals]
    items = [item for item in items if item is not None]
    if len(items) > 1:
        raise ValueError(f"a request carries {len(items)} images; vittle's LLaVA models take one image per question")
    return items[0] if items else None


class Vittle(_base()):  # type: ignore[misc]
    """lmms-eval model: `pretrained` (checkpoint folder or hub id), `device`, `dtype`,
    `batch_size`, `device_map`, `quantize` (8bit / 4bit), as `--model_args`."""

    is_simple = True

    def __init__(self, pretrained: str, device: str = "auto", dtype: str = "auto", batch_size: int | str = 1,
                 device_map: str | None = None, quantize: str | None = None, assistant: Any = None, **unused: Any) -> None:
        if type(self).__mro__[1] is not object:
            super().__init__()
        if unused:
            logger.warning("vittle lmms-eval model: ignoring unknown model_args %s", sorted(unused))
        if assistant is None:
            from vittle.inference import Assistant  # heavy

            assistant = Assistant.load(pretrained, device=device, dtype=dtype, device_map=device_map, quantize=quantize)
        self.assistant = assistant
        self.pretrained = pretrained
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.task_dict: dict[str, Any] = getattr(self, "task_dict", {})
        self._rank, self._world_size = getattr(self, "_rank", 0), getattr(self, "_world_size", 1)
        self._warned_sampling = False

    # lmms-eval requests: (context, gen_kwargs | doc_to_target, doc_to_visual, doc_id, task, split)
    def _visual(self, doc_to_visual: Any, doc_id: Any, task: str, split: str) -> Any:
        if doc_to_visual is None:
            return None
        return _first_image(doc_to_visual(self.task_dict[task][split][doc_id]))

    @staticmethod
    def _question(context: str) -> str:
        """The task's prompt without image placeholders (the template adds the image tokens)."""
        return context.replace(IMAGE_PLACEHOLDER, "").strip()

    def generate_until(self, requests: Sequence[Any]) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        settings: dict[tuple, tuple[int, list[str]]] = {}
        for index, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            if (gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature") or 0) > 0) and not self._warned_sampling:
                logger.warning("vittle lmms-eval model: sampling was asked for; answering greedily (temperature 0)")
                self._warned_sampling = True
            key = (int(gen_kwargs.get("max_new_tokens", 128)), tuple(until))
            groups.setdefault(key, []).append(index)
            settings[key] = (key[0], until)
        for key, members in groups.items():
            max_new_tokens, until = settings[key]
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                images = [self._visual(*requests[i].args[2:6]) for i in chunk]
                questions = [self._question(requests[i].args[0]) for i in chunk]
                answers = self.assistant.answer_batch(images, questions, max_new_tokens=max_new_tokens, batch_size=len(chunk))
                for i, answer in zip(chunk, answers):
                    for stop in until:
                        if stop and stop in answer:
                            answer = answer[: answer.index(stop)]
                    results[i] = answer
        return [r if r is not None else "" for r in results]

    def loglikelihood(self, requests: Sequence[Any]) -> list[tuple[float, bool]]:
        out = []
        for request in requests:
            context, doc_to_target, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id] if task in self.task_dict else None
            continuation = doc_to_target(doc) if callable(doc_to_target) else str(doc_to_target)
            if isinstance(continuation, (list, tuple)):
                continuation = continuation[0]
            image = self._visual(doc_to_visual, doc_id, task, split)
            try:
                out.append(self.assistant.loglikelihood(image, self._question(context), str(continuation)))
            except ValueError as err:
                raise ValueError(f"request {doc_id!r} of {task}: {err}") from None
        return out

    def generate_until_multi_round(self, requests: Sequence[Any]) -> list[str]:
        raise NotImplementedError("the vittle lmms-eval model answers single-round tasks only")

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size
