"""LLaVA-Bench (COCO, In-the-Wild) scored by an LLM judge over any OpenAI-compatible chat API.

The judge sees, in LLaVA's review layout, the image's context (captions), the question, a
reference answer (LLaVA-Bench ships GPT-4's) as answer 1 and the model's answer as answer 2,
then the rule of the question's category (LLaVA's `rule.json`, keys `llava_bench_<category>`
with `role` and `prompt`). Its reply starts with a line "score1 score2". The relative score
of a category is mean(model) / mean(reference) * 100, as LLaVA's `summarize_gpt_review.py`
reports it.

Differences from LLaVA's script, on purpose: temperature 0 (LLaVA: 0.2) so that repeated runs
differ only where the service is not deterministic; an off-format reply is recorded as a
failure and left out of the means (LLaVA keeps it as the pair -1, -1, which pulls both means
down); answers are paired with questions by `question_id`, not by line order; reviews are
appended as they come, so an interrupted run resumes. Settings come from arguments or the
environment: VITTLE_JUDGE_URL (or OPENAI_BASE_URL), VITTLE_JUDGE_MODEL, VITTLE_JUDGE_KEY (or
OPENAI_API_KEY).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vittle.analysis.chat_client import ChatClient, ChatFailure, RetryPolicy, message_content
from vittle.analysis.evaluate.llava_files import FormatError, Question, append_rows, read_appended, read_jsonl

logger = logging.getLogger(__name__)

SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
"""The judge's system message (LLaVA's)."""


class JudgeError(RuntimeError):
    """The judge service could not be reached or refused the request (after retries)."""


@dataclass
class JudgeSettings:
    base_url: str = ""
    """OpenAI-compatible API root, e.g. https://api.openai.com/v1 (env VITTLE_JUDGE_URL or OPENAI_BASE_URL)."""
    model: str = ""
    """The judge model (env VITTLE_JUDGE_MODEL); the paper used GPT-4."""
    api_key: str = ""
    """Bearer token (env VITTLE_JUDGE_KEY or OPENAI_API_KEY); empty for a local server without one."""
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout_s: float = 120.0
    retries: int = 5
    """Further attempts after a timeout, a connection error, a 429 or a 5xx."""
    backoff_s: float = 2.0
    """Wait before the first retry, doubled for each further one (a Retry-After header sets that one wait)."""

    @classmethod
    def from_env(cls, **given: Any) -> JudgeSettings:
        values = {"base_url": os.environ.get("VITTLE_JUDGE_URL") or os.environ.get("OPENAI_BASE_URL", ""),
                  "model": os.environ.get("VITTLE_JUDGE_MODEL", ""),
                  "api_key": os.environ.get("VITTLE_JUDGE_KEY") or os.environ.get("OPENAI_API_KEY", "")}
        values.update({k: v for k, v in given.items() if v not in (None, "")})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if not self.base_url:
            raise ValueError("no judge URL: give --judge-url or set VITTLE_JUDGE_URL (an OpenAI-compatible API root, e.g. .../v1)")
        if not self.model:
            raise ValueError("no judge model: give --judge-model or set VITTLE_JUDGE_MODEL")
        if self.retries < 0 or self.timeout_s <= 0 or self.max_tokens < 1:
            raise ValueError(f"retries must be >= 0, timeout_s > 0 and max_tokens >= 1; got {self.retries}, {self.timeout_s}, {self.max_tokens}")


class Judge:
    """A chat-completions client with retries (`vittle.analysis.chat_client`, shared with the translator)."""

    def __init__(self, settings: JudgeSettings, sleep: Any = time.sleep):
        settings.check()
        self.settings = settings
        self._client = ChatClient(settings.base_url, settings.api_key or None, settings.timeout_s,
                                  RetryPolicy(retries=settings.retries, backoff_s=settings.backoff_s), sleep=sleep)

    @property
    def calls(self) -> int:
        """Requests sent so far (retries included)."""
        return self._client.calls

    def close(self) -> None:
        self._client.close()

    def review(self, content: str) -> str:
        """The judge's reply to one review request."""
        body = {"model": self.settings.model, "temperature": self.settings.temperature, "max_tokens": self.settings.max_tokens,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]}
        try:
            payload = self._client.complete(body)
        except ChatFailure as err:
            if err.final and err.status != 200:
                raise JudgeError(f"the judge at {self.settings.base_url} refused the request: HTTP {err.status}: {err.body}") from None
            if err.final:
                raise JudgeError(f"the judge at {self.settings.base_url} sent a reply without choices[0].message.content: "
                                 f"{err.body}") from None
            raise JudgeError(f"the judge at {self.settings.base_url} {str(err).split(' ', 1)[1]}") from None
        content = message_content(payload)
        if content is None:
            raise JudgeError(f"the judge at {self.settings.base_url} sent a reply without choices[0].message.content: "
                             f"{str(payload)[:300]}")
        return content


def review_content(context: str, question: str, reference: str, answer: str, rule: Mapping[str, str]) -> str:
    """The review request in LLaVA's layout: context, question, the two answers, the rule."""
    role, prompt = rule["role"], rule["prompt"]
    parts = [("Context", context), ("Question", question)]
    text = "".join(f"[{name}]\n{value}\n\n" for name, value in parts)
    for number, value in ((1, reference), (2, answer)):
        text += f"[{role} {number}]\n{value}\n\n[End of {role} {number}]\n\n"
    return text + f"[System]\n{prompt}\n\n"


def parse_scores(review: str) -> tuple[float, float] | None:
    """The pair on the reply's first line ("8 6", "8, 6", "8.5 7"); None when it is not exactly two numbers."""
    first = review.split("\n", 1)[0].replace(",", " ").split()
    if len(first) != 2:
        return None
    try:
        return float(first[0]), float(first[1])
    except ValueError:
        return None


def read_rules(path: str | Path) -> dict[str, dict[str, str]]:
    """LLaVA's rule.json: {"llava_bench_<category>": {"role": ..., "prompt": ...}, ...}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (LLaVA's rule.json)")
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FormatError(f"{path}: not JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(rules, dict):
        raise FormatError(f"{path}: expected a JSON object of rules")
    for key, rule in rules.items():
        if not isinstance(rule, dict) or not isinstance(rule.get("role"), str) or not isinstance(rule.get("prompt"), str):
            raise FormatError(f"{path}: rule {key!r} needs a string 'role' and a string 'prompt'")
    return rules


def read_contexts(path: str | Path) -> dict[str, str]:
    """image -> its captions joined by newlines (LLaVA-Bench's context.jsonl: `image`, `caption` list or string)."""
    contexts = {}
    for number, row in enumerate(read_jsonl(path), 1):
        if "image" not in row or "caption" not in row:
            raise FormatError(f"{path}: context {number} needs 'image' and 'caption'")
        caption = row["caption"]
        contexts[row["image"]] = "\n".join(caption) if isinstance(caption, list) else str(caption)
    return contexts


def run_reviews(judge: Judge, questions: Sequence[Question], contexts: Mapping[str, str], references: Mapping[Any, Mapping[str, Any]],
                answers: Mapping[Any, Mapping[str, Any]], rules: Mapping[str, Mapping[str, str]], out: str | Path,
                progress: bool = True) -> list[dict[str, Any]]:
    """Review every answered question not yet in `out` (a reviews.jsonl, appended and fsynced
    per review); returns all reviews of the file."""
    out = Path(out)
    done = {row["question_id"] for row in read_appended(out)}
    todo = [q for q in questions if q.question_id in answers and q.question_id not in done]
    for question in todo:
        key = f"llava_bench_{question.category}"
        if key not in rules:
            raise FormatError(f"question {question.question_id!r}: no rule {key!r} in the rule file (have: {', '.join(sorted(rules))})")
        if question.question_id not in references:
            raise FormatError(f"question {question.question_id!r} has no reference answer")
        if question.image not in contexts:
            raise FormatError(f"question {question.question_id!r}: no context for the image {question.image!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    for question in tqdm(todo, desc=f"judging {out.parent.name}", unit="review", disable=not progress):
        reference, answer = references[question.question_id], answers[question.question_id]
        content = review_content(contexts[question.image], question.text, str(reference.get("text", "")), str(answer.get("text", "")),
                                 rules[f"llava_bench_{question.category}"])
        reply = judge.review(content)
        scores = parse_scores(reply)
        if scores is None:
            logger.warning("question %s: the judge's reply does not start with two scores; recorded as a failure", question.question_id)
        row = {"question_id": question.question_id, "category": question.category,
               "answer1_id": reference.get("answer_id", question.question_id), "answer2_id": answer.get("answer_id"),
               "content": reply, "tuple": list(scores) if scores else None, "failed": scores is None}
        append_rows(out, [row])
    return read_appended(out)


def summarize(reviews: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per category and "all": reference and model mean scores, relative score (model /
    reference * 100), reviews counted and failures (left out of the means)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in reviews:
        for key in dict.fromkeys((str(row.get("category")), "all")):
            groups.setdefault(key, []).append(row)
    summary = {}
    for key in sorted(groups, key=lambda k: (k == "all", k)):
        scored = [row["tuple"] for row in groups[key] if row.get("tuple")]
        entry: dict[str, float] = {"n": len(scored), "failures": len(groups[key]) - len(scored)}
        if scored:
            reference = statistics.fmean(s[0] for s in scored)
            model = statistics.fmean(s[1] for s in scored)
            entry.update(reference=reference, model=model, relative=100.0 * model / reference if reference else float("nan"))
        summary[key] = entry
    return summary


def combine_runs(summaries: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of the relative score over judge runs, per category."""
    keys = [k for k in summaries[0] if all("relative" in s.get(k, {}) for s in summaries)] if summaries else []
    combined = {}
    for key in keys:
        values = [s[key]["relative"] for s in summaries]
        combined[key] = {"relative_mean": statistics.fmean(values), "relative_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                         "runs": len(values), "failures": sum(s[key]["failures"] for s in summaries)}
    return combined
