"""Probing a query further than its four answers, on the model workers: the answer
distributions of a turn and a severity sweep.

    probing = Probing(pool, vocabulary=("yes", "no", ...), max_new_tokens=4)
    probing.distributions(query, answers, "vittle-f", alpha=None)   # TurnDistributions
    probing.sweep(image, question, steps, "vittle-f", alpha=0.2)    # Sweep (severities 1..5)

Each model scores all its queries in one job on its worker (`ModelWorker.distribution`): the
clean and perturbed query of a turn, or the clean query and its five severities of a sweep,
with the layer-l states of the sweep's queries in the same pass. A Vittle model's alpha goes
with its jobs, so other users' requests on the same worker keep their own. A family that cannot
score candidate answers yet (Qwen's 3-D positions: `NotImplementedError`) gets a turn without
distributions and a note saying why, and a sweep refused with the same reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from vittle.app.inputs import InputError
from vittle.app.models import ModelPool
from vittle.app.probe_results import ShiftEffect, Sweep, SweepPoint, TurnDistributions
from vittle.distribution import total_variation, unique_answers

TOP_K = 5
"""For models without a known answer vocabulary: the first tokens whose greedy continuations
join the candidates."""
EMPTY = "(empty answer)"


def unsupported(err: NotImplementedError) -> str:
    """The refusal of a family that cannot score candidate answers yet (it names the family and
    says why) as a sentence for the page."""
    text = str(err).rstrip(".")
    return f"{text[:1].upper()}{text[1:]}."


class Probing:
    def __init__(self, pool: ModelPool, vocabulary: Sequence[str] = (), max_new_tokens: int = 8, top_k: int = TOP_K):
        self.pool = pool
        self.vocabulary = tuple(vocabulary)
        """The models' answer vocabulary when known (lab models of easy-vqa); empty otherwise."""
        self.max_new_tokens = max_new_tokens
        self.top_k = 0 if self.vocabulary else top_k

    def over(self, answers: Sequence[str], candidates: int) -> str:
        """What the distributions are over, in words."""
        given = ", ".join(f"'{a}'" for a in unique_answers(answers) if a not in self.vocabulary)
        if self.vocabulary:
            return (f"over the {len(self.vocabulary)} answers the models were trained to give (yes/no, shapes, colours)"
                    + (f" plus the answers they gave outside them ({given})" if given else "")
                    + f": {candidates} candidates, each scored as the whole answer, renormalised over them")
        return (f"over the answers the models gave plus, per query, the greedy answers that begin with its {self.top_k} most "
                "likely first tokens (these models have no known answer list): each scored as the whole answer, "
                "renormalised over them")

    def _candidates(self, answers: Sequence[str]) -> tuple[str, ...]:
        return tuple(unique_answers([*self.vocabulary, *(a for a in answers if a != EMPTY)]))

    def _alpha(self, name: str, vittle: str, alpha: float | None) -> float | None:
        return alpha if name == vittle else None

    def distributions(self, query: Any, answers: dict[str, str], vittle: str, alpha: float | None = None) -> TurnDistributions:
        """The four answers' distributions (each model's clean and perturbed query in one job)
        and the shift's effect per model, over the vocabulary and the four answers given."""
        candidates = self._candidates(answers.values())
        jobs = {role: self.pool.worker(name).distribution(
                    [query.image, query.perturbed_image], [query.question, query.perturbed_question], candidates,
                    top_k=self.top_k, max_new_tokens=self.max_new_tokens, alpha=self._alpha(name, vittle, alpha))
                for role, name in (("baseline", "baseline"), ("vittle", vittle))}
        try:
            results = {role: future.result() for role, future in jobs.items()}
        except NotImplementedError as err:  # the turn goes on without its charts
            return TurnDistributions({}, {}, "", alpha, unavailable=f"{unsupported(err)} The four answers and the panels do not need them.")
        distributions, effects = {}, {}
        for role, ((clean, perturbed), _) in results.items():
            distributions[f"{role}_clean"], distributions[f"{role}_perturbed"] = clean, perturbed
            name = "baseline" if role == "baseline" else vittle
            effects[self.pool.label(name)] = ShiftEffect.of(answers[f"{role}_clean"], clean, perturbed)
        count = len(distributions["baseline_clean"].candidates)
        return TurnDistributions(distributions, effects, self.over(answers.values(), count), alpha)

    def sweep(self, image: Any, question: str, steps: Sequence[tuple[int, str, Any, str]], setting: str, vittle: str,
              alpha: float | None = None) -> Sweep:
        """Both models on the clean query and on `steps` = [(severity, spec, image, question)]:
        the clean answer's probability, the distance from the clean distribution and the
        layer-l cosine distance at each severity. Per model: one answer job for the clean
        answer, then one job scoring all six queries and returning their states."""
        from vittle.analysis.metrics import cosine_distances  # heavy

        started = time.perf_counter()
        names = ("baseline", vittle)
        answered = {name: self.pool.worker(name).answer(image, question, max_new_tokens=self.max_new_tokens,
                                                        alpha=self._alpha(name, vittle, alpha)) for name in names}
        clean_answers = {name: future.result().strip() or EMPTY for name, future in answered.items()}
        candidates = self._candidates(list(clean_answers.values()))
        images, questions = [image, *(s[2] for s in steps)], [question, *(s[3] for s in steps)]
        jobs = {name: self.pool.worker(name).distribution(images, questions, candidates, top_k=self.top_k,
                                                          max_new_tokens=self.max_new_tokens, alpha=self._alpha(name, vittle, alpha),
                                                          states=True) for name in names}
        try:
            results = {name: future.result() for name, future in jobs.items()}
        except NotImplementedError as err:
            raise InputError(f"The severity sweep scores candidate answers. {unsupported(err)}") from err
        points, clean_probs, labels, count = {}, {}, {}, 0
        for name, (found, states) in results.items():
            label = labels[name] = self.pool.label(name)
            answer = clean_answers[name]
            distances = cosine_distances(np.repeat(states[:1], len(steps), axis=0), states[1:])
            clean_probs[label] = found[0].prob(answer)
            points[label] = [SweepPoint(severity, spec, found[k + 1].prob(answer), total_variation(found[0], found[k + 1]),
                                        float(distances[k]), found[k + 1].best)
                             for k, (severity, spec, _, _) in enumerate(steps)]
            count = len(found[0].candidates)
        return Sweep(setting, {labels[n]: a for n, a in clean_answers.items()}, clean_probs, points,
                     self.over(list(clean_answers.values()), count), alpha, round(time.perf_counter() - started, 3))
