"""Probing further on the embedded models: answer distributions, the alpha control, the severity
sweep, the turn's download and the link that reopens its settings."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, urlsplit

import easy_vqa
import numpy as np
import pytest

from vittle.app.examples import example_rows
from vittle.app.figures import effects_markdown, sweep_markdown
from vittle.app.inputs import InputError
from vittle.app.record import ExampleFinder, TurnRecord, TurnSettings, panel_numbers
from vittle.app.service import ROLES
from vittle.app.ui_probe import restored
from vittle.distribution import total_variation

QUESTION = "what color is the shape?"


@pytest.fixture(scope="module")
def turn(service):
    query = service.prepare(easy_vqa.get_test_image_paths()[0], QUESTION, "frost", 3, "none", 3)
    answers = list(service.answers(query, "vittle-f"))[-1]
    return query, answers, service.distributions(query, answers, "vittle-f")


def test_distributions_sum_to_one_and_their_argmax_is_the_answer_given(service, turn):
    query, answers, found = turn
    assert list(found.distributions) == list(ROLES)
    vocabulary = {"yes", "no", "circle", "rectangle", "triangle", "red", "green", "blue", "black", "gray", "yellow", "teal", "brown"}
    for role in ROLES:
        dist = found.distributions[role]
        assert dist.probs.sum() == pytest.approx(1.0, abs=1e-9) and (dist.probs >= 0).all()
        assert vocabulary <= set(dist.candidates) and 0.9 < dist.coverage <= 1.0
        if answers[role] in dist.candidates:
            assert dist.best == answers[role], role
    assert found.distributions["baseline_clean"].candidates == found.distributions["vittle_perturbed"].candidates
    for label, role in (("Baseline", "baseline"), ("Vittle (F)", "vittle")):
        effect = found.effects[label]
        clean, perturbed = found.distributions[f"{role}_clean"], found.distributions[f"{role}_perturbed"]
        assert effect.clean_answer == answers[f"{role}_clean"] == "red"
        assert effect.clean_prob == pytest.approx(clean.prob("red")) and effect.perturbed_prob == pytest.approx(perturbed.prob("red"))
        assert effect.drop == pytest.approx(effect.clean_prob - effect.perturbed_prob)
        assert 0.0 <= effect.total_variation <= 1.0 and effect.total_variation == pytest.approx(total_variation(clean, perturbed))
    assert "13 answers the models were trained to give" in found.over


def test_alpha_zero_answers_exactly_as_the_model_without_its_bottleneck(service, turn):
    from vittle.inference import Assistant
    from vittle.model import detach_bottleneck

    query, answers, _ = turn
    plain = Assistant.load(service.paths["vittle-f"], device="cpu")
    detach_bottleneck(plain.model)
    plain.share_vision_cache(service.models.tower_cache)  # the same frozen tower's features: what differs is the bottleneck alone
    off = list(service.answers(query, "vittle-f", alpha=0.0))[-1]
    expected = [plain.answer(image, question, max_new_tokens=service.max_new_tokens)
                for image, question in ((query.image, query.question), (query.perturbed_image, query.perturbed_question))]
    assert [off["vittle_clean"], off["vittle_perturbed"]] == expected
    found = service.distributions(query, off, "vittle-f", alpha=0.0)
    candidates = found.distributions["vittle_clean"].candidates
    scores = plain.answer_logprobs([query.image, query.perturbed_image], [query.question, query.perturbed_question], candidates)
    assert np.array_equal(np.asarray(found.distributions["vittle_clean"].log_probs), scores[0])
    assert np.array_equal(np.asarray(found.distributions["vittle_perturbed"].log_probs), scores[1])
    assert found.alpha == 0.0 and service.distributions(query, answers, "vittle-f", alpha=0.5).alpha is None  # 0.5: as trained
    with pytest.raises(InputError, match="alpha must be between 0 and 1"):
        list(service.answers(query, "vittle-f", alpha=1.5))


def test_alpha_is_applied_per_job_and_never_leaks_between_concurrent_users(service, turn):
    query = turn[0]
    answers = {alpha: list(service.answers(query, "vittle-f", alpha=alpha))[-1] for alpha in (0.0, 1.0, None)}

    def scores(alpha: float | None) -> np.ndarray:
        return np.asarray(service.distributions(query, answers[alpha], "vittle-f", alpha=alpha).distributions["vittle_clean"].log_probs)

    expected = {alpha: (answers[alpha]["vittle_clean"], scores(alpha)) for alpha in (0.0, 1.0, None)}
    # the three alphas score the answers differently (the embedded model's posterior carries information)
    assert not np.allclose(expected[1.0][1], expected[0.0][1]) and not np.allclose(expected[None][1], expected[0.0][1])
    barrier = threading.Barrier(12)

    def user(k: int) -> tuple[float | None, str, np.ndarray]:
        alpha = (0.0, 1.0, None)[k % 3]
        barrier.wait()
        return alpha, list(service.answers(query, "vittle-f", alpha=alpha))[-1]["vittle_clean"], scores(alpha)

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(user, range(12)))
    assert all(answer == expected[alpha][0] for alpha, answer, _ in results), results
    assert all(np.allclose(got, expected[alpha][1], atol=1e-5) for alpha, _, got in results)
    from vittle.model import get_bottleneck

    assert get_bottleneck(service.assistant("vittle-f").model).inference_alpha is None  # put back after each job


def test_sweep_gives_five_points_per_model(service):
    path = easy_vqa.get_test_image_paths()[0]
    sweep = service.sweep(path, QUESTION, "gaussian_noise", "char_typo", "vittle-f", alpha=None)
    assert set(sweep.points) == {"Baseline", "Vittle (F)"} and sweep.setting == "Gaussian noise severity 1-5 + Keyboard typos level 1-5"
    for label, points in sweep.points.items():
        assert [p.severity for p in points] == [1, 2, 3, 4, 5]
        assert [p.spec for p in points] == [f"gaussian_noise:{k}+char_typo:{k}" for k in range(1, 6)]
        assert all(0.0 <= p.clean_answer_prob <= 1.0 and 0.0 <= p.total_variation <= 1.0 and 0.0 <= p.cosine_distance <= 2.0
                   for p in points)
        assert sweep.clean_answers[label] == "red" and 0.5 < sweep.clean_probs[label] <= 1.0
    # severity 3 of the sweep is the turn at severity 3: the same cosine distance as the panels show
    query = service.prepare(path, QUESTION, "gaussian_noise", 3, "char_typo", 3)
    panels = service.panels(query, "vittle-f")
    assert sweep.points["Baseline"][2].cosine_distance == pytest.approx(panels.numbers.query_cosine_distance["Baseline"], abs=1e-5)
    assert "Baseline (clean answer 'red'" in sweep_markdown(sweep)
    with pytest.raises(InputError, match="choose a visual corruption, or a text perturbation with levels"):
        service.sweep(path, QUESTION, "none", "none", "vittle-f")
    with pytest.raises(InputError, match="needs an image"):
        service.sweep(None, QUESTION, "frost", "none", "vittle-f")


def test_the_download_round_trips_and_holds_the_numbers_shown(service, turn):
    query, answers, found = turn
    panels = service.panels(query, "vittle-f")
    sweep = service.sweep(easy_vqa.get_test_image_paths()[0], QUESTION, "frost", "none", "vittle-f")
    settings = TurnSettings(example=0, question=QUESTION, visual="frost", severity=3)
    record = TurnRecord(settings, query.spec, query.label, query.perturbed_question, query.notes, answers, "marks", found,
                        panel_numbers(panels.numbers), sweep)
    again = TurnRecord.from_json(record.to_json())
    assert again.to_json() == record.to_json() and again.settings == settings and again.answers == answers
    data = json.loads(record.to_json())
    shown = effects_markdown(found, "Vittle (F)", 0.5) + sweep_markdown(sweep)
    effect = data["distributions"]["effects"]["Baseline"]
    for value, fmt in ((effect["clean_prob"], ".3f"), (effect["perturbed_prob"], ".3f"), (effect["drop"], "+.3f"),
                       (effect["total_variation"], ".3f")):
        assert format(value, fmt) in shown
    probs = data["distributions"]["distributions"]["vittle_perturbed"]["probs"]
    assert sum(probs) == pytest.approx(1.0)
    assert data["panels"]["query_cosine_distance"] == panels.numbers.query_cosine_distance
    assert data["panels"]["posterior"]["visual_kl_mean"] == pytest.approx(panels.numbers.posterior.visual_kl_mean)
    assert len(data["sweep"]["points"]["Vittle (F)"]) == 5 and data["link"].startswith("?example=0&")
    with pytest.raises(ValueError, match="turn record format 99"):
        TurnRecord.from_json(json.dumps({**data, "format": 99}))


def test_the_link_restores_the_inputs(service, tmp_path):
    rows = example_rows()
    choices = {"visual": ["none", "frost", "zoom_blur"], "text": ["none", "char_typo", "greek"], "vittle": ["vittle-f", "vittle-l"],
               "method": ["pca", "umap"]}
    settings = TurnSettings(example=2, question="is there a blue shape? (é & ?=)", visual="zoom_blur", severity=5, text="greek",
                            level=2, vittle="vittle-l", alpha=0.25, method="umap")
    params = dict(parse_qsl(urlsplit(settings.link("http://127.0.0.1:7860/")).query))
    found, problems = TurnSettings.from_params(params, len(rows), choices)
    assert problems == [] and TurnSettings(**found) == settings
    values, _ = restored(service, rows, params, choices)
    assert values["image"] == rows[2][0] and values["alpha"] == 0.25 and values["question"] == settings.question
    values, _ = restored(service, rows, {"example": "none", "vittle": "vittle-l"}, choices)
    assert values == {"image": None, "vittle": "vittle-l", "alpha": service.training_alpha("vittle-l")}
    found, problems = TurnSettings.from_params({"severity": "9", "alpha": "x", "visual": "snow", "example": "99", "level": "2"},
                                               len(rows), choices)
    assert found == {"level": 2} and len(problems) == 4 and any(p.startswith("visual='snow': one of none, frost") for p in problems)
    finder = ExampleFinder([row[0] for row in rows])
    copy = tmp_path / "upload.png"
    copy.write_bytes(open(rows[1][0], "rb").read())  # Gradio hands the callback a copy of the example
    assert finder.index(str(copy)) == 1 and finder.index(None) is None and finder.index(str(tmp_path / "missing.png")) is None


def test_the_answer_charts_line_up_and_no_number_reads_minus_zero(service, turn):
    from vittle.app.figures import distribution_specs, signed

    query, answers, dists = turn
    specs = distribution_specs(dists, {"baseline": "Baseline", "vittle": "Vittle (F)"})
    assert specs["baseline"]["layout"]["height"] == specs["vittle"]["layout"]["height"]  # side by side, the same height
    assert specs["baseline"]["layout"]["uniformtext"]["minsize"] >= 10  # value labels never shrink below 10 px
    assert [signed(v) for v in (-0.0004, 0.0, 0.0004, -0.25, 0.1)] == ["0.000", "0.000", "0.000", "-0.250", "+0.100"]
