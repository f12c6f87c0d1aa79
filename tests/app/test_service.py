"""The app's service on the embedded default models: answers, probes, panels, lab numbers."""

from __future__ import annotations

from pathlib import Path

import easy_vqa
import numpy as np
import pytest
from PIL import Image

from vittle.analysis.metrics import cosine_distances
from vittle.app.inputs import InputError
from vittle.app.service import ROLES, spec_of


@pytest.fixture(scope="module")
def query(service):
    return service.prepare(easy_vqa.get_test_image_paths()[0], "what color is the shape?", "gaussian_noise", 4, "char_typo", 2)


def test_spec_of_menu_choices():
    assert spec_of("frost", 3, "none", 1) == "frost:3"
    assert spec_of("none", 3, "greek", 5) == "greek"
    assert spec_of("zoom_blur", 2, "word_swap", 4) == "zoom_blur:2+word_swap:4"
    assert spec_of(None, 3, None, 3) == "clean"
    with pytest.raises(ValueError, match="unknown perturbation 'snow'"):
        spec_of("snow", 3)


def test_prepare_perturbs_both_modalities(service, query):
    assert query.spec == "gaussian_noise:4+char_typo:2"
    assert query.label == "Gaussian noise (severity 4) + Keyboard typos (level 2)"
    assert query.image.size == query.perturbed_image.size == (64, 64)
    assert np.abs(np.asarray(query.image, float) - np.asarray(query.perturbed_image, float)).mean() > 5
    assert query.perturbed_question != query.question == "what color is the shape?"
    again = service.prepare(easy_vqa.get_test_image_paths()[0], "what color is the shape?", "gaussian_noise", 4, "char_typo", 2)
    assert again.perturbed_question == query.perturbed_question  # deterministic under the service's seed
    assert np.array_equal(np.asarray(again.perturbed_image), np.asarray(query.perturbed_image))
    assert service.corruptions.hits >= 1  # the service's own memo: the same corruption was not computed again


def test_the_models_share_one_memo_of_encoded_images(service, query):
    baseline, vittle = service.models.assistant("baseline"), service.models.assistant("vittle-f")
    assert baseline.images.memo is vittle.images.memo is service.models.pixels
    before = service.models.pixels.hits
    pixels = baseline.images.encode(query.perturbed_image)
    assert vittle.images.encode(query.perturbed_image) is pixels and service.models.pixels.hits >= before + 1
    towers = [m for a in (baseline, vittle) for m in a.model.modules() if getattr(m, "feature_cache", None) is not None]
    assert len(towers) == 2 and towers[0].feature_cache is towers[1].feature_cache is service.models.tower_cache  # one bound


def test_prepare_refuses_bad_input(service, bad_files):
    with pytest.raises(InputError, match="question box is empty"):
        service.prepare(None, "   ")
    with pytest.raises(InputError, match="not an image"):
        service.prepare(str(bad_files["text"]), "What color?")
    with pytest.raises(InputError, match=r"invalid level '9' for 'frost'"):
        service.prepare(None, "What color?", "frost", 9)


def test_answers_arrive_one_by_one_and_match_the_models(service, query):
    updates = list(service.answers(query, "vittle-f"))
    final = updates[-1]
    assert list(final) == list(ROLES) and len(updates) == 4
    assert [sum(bool(v) for v in update.values()) for update in updates] == [1, 2, 3, 4]  # each update adds one answer
    baseline, vittle = service.assistant("baseline"), service.assistant("vittle-f")
    expected = {
        "baseline_clean": baseline.answer(query.image, query.question, max_new_tokens=service.max_new_tokens),
        "baseline_perturbed": baseline.answer(query.perturbed_image, query.perturbed_question, max_new_tokens=service.max_new_tokens),
        "vittle_clean": vittle.answer(query.image, query.question, max_new_tokens=service.max_new_tokens),
        "vittle_perturbed": vittle.answer(query.perturbed_image, query.perturbed_question, max_new_tokens=service.max_new_tokens),
    }
    assert final == expected
    assert final["baseline_clean"] == "red"  # the embedded baseline answers this test image right
    with pytest.raises(InputError, match="Unknown Vittle model 'baseline'"):
        next(service.answers(query, "baseline"))


@pytest.mark.parametrize("text", ["ما لون الشكل؟", "what color is the shape? 🎨🔺", "is there a red shape? " * 60])
def test_unusual_questions_are_answered(service, text):
    query = service.prepare(easy_vqa.get_test_image_paths()[1], text)
    final = list(service.answers(query))[-1]
    assert all(isinstance(final[role], str) and final[role] for role in ROLES)


def test_question_too_long_for_the_model(service):
    """2,048 positions less the 4 of the one-word answer (`service.max_new_tokens`)."""
    with pytest.raises(InputError, match=r"The query takes [0-9,]+ tokens \(image and question\); this model reads at most 2,044 "):
        service.prepare(None, "\U0001F3A8" * 600)  # 600 characters, 4 bytes each in byte-level BPE
    # the image's tokens count too (16 for the embedded models): a question that fits alone does not fit with an image
    question = "\U0001F3A8" * 300 + " x" * 418  # the query takes 2,042 tokens alone (fits), 2,059 with the image
    assert service.prepare(None, question).question == question.strip()
    with pytest.raises(InputError, match="The query takes"):
        service.prepare(easy_vqa.get_test_image_paths()[0], question)


def test_panels(service, query):
    panels = service.panels(query, "vittle-f", "pca")
    n = len(service.references.samples()[0])
    assert n == 24
    spec = panels.specs["embeddings"]
    points = [trace for trace in spec["data"] if trace.get("meta", {}).get("part") == "points"]
    assert {trace["name"] for trace in points} == {"clean", "Gaussian noise 4 + Keyboard typos 2"}
    assert [trace.get("name") for trace in spec["data"]].count("your query: clean") == 2
    reference = service.reference("baseline", query.spec)
    assert reference["clean"].shape == reference[query.spec].shape == (n, 128)
    # the map's points are the reference embeddings, placed by the shared projection; each carries its index
    shift = service.references.analysis("pca", query.spec, "vittle-f")
    x = np.full(n, np.nan)
    for trace in points:
        if trace["xaxis"] == "x" and trace["meta"]["role"] == "clean":  # the baseline's panel
            x[trace["customdata"]] = trace["x"]
    assert np.allclose(x, shift.place("baseline", reference["clean"])[:, 0])
    # each model's answers to the reference queries, clean and perturbed, are in the hover
    answers = service.references.answers("baseline", query.spec)
    assert len(answers["clean"]) == len(answers[query.spec]) == n
    first = next(t for t in points if t["meta"]["role"] == "perturbed")
    i = first["customdata"][0]
    assert f"Baseline: {answers['clean'][i]} → {answers[query.spec][i]}" in first["hovertext"][0]
    # the query's distance is the cosine distance of its two probed states
    baseline = service.assistant("baseline")
    clean, perturbed = baseline.probe(query.image, query.question), baseline.probe(query.perturbed_image, query.perturbed_question)
    expected = cosine_distances(clean.hidden_after[None], perturbed.hidden_after[None])[0]
    assert panels.numbers.query_cosine_distance["Baseline"] == pytest.approx(expected, rel=1e-5)
    bars = [trace for trace in panels.distances.data if trace.type == "bar"]
    assert [sum(b.y) for b in bars] == [n, n]
    assert bars[0].name.startswith("Baseline (mean ")
    assert panels.numbers.reference_cosine_mean["Baseline"] == pytest.approx(
        cosine_distances(reference["clean"], reference[query.spec]).mean(), rel=1e-5)
    # Vittle's posterior over the image grid (4 x 4 for the embedded models), and per text token
    assert np.shape(panels.variance.data[0].z) == (4, 4) and np.shape(panels.kl.data[0].z) == (4, 4)  # 16 image tokens
    assert panels.tokens_html.count("<span") == 2 * len(perturbed.text_tokens)
    # the embedded Vittle (F) comes from the staged study: its posterior carries information (KL ~0.2 nats per dim)
    assert "collapsed to the prior" not in panels.summary and "mean KL to the prior per dim visual" in panels.summary
    # fixed colour scales from 0, the prior's variance marked; the KL scale covers every value shown
    variance, kl = panels.variance.data[0], panels.kl.data[0]
    assert variance.zmin == 0.0 and variance.zmax >= 1.0 and list(variance.colorbar.ticktext) == ["0", "1 (prior)"]
    assert kl.zmin == 0.0 and kl.zmax >= 0.05 and kl.zmax >= np.max(kl.z) > 0.01
    assert "<br>" in panels.variance.layout.title.text  # the long title wraps instead of being cut
    # the variance over the image: the token grid on the same fixed scale, over the enlarged image
    overlay = panels.specs["overlay"]["data"]
    assert overlay[0]["type"] == "image" and np.shape(overlay[1]["z"]) == (4, 4) and overlay[1]["zmax"] >= 1.0
    assert "posterior variance: 0 (clear) to" in panels.tokens_html and f"KL to the prior: 0 (clear) to {kl.zmax:.4g}" in panels.tokens_html


def test_clean_query_has_no_shift_panels(service):
    query = service.prepare(easy_vqa.get_test_image_paths()[2], "what shape is this?", "none", 3, "none", 3)
    panels = service.panels(query, "vittle-l", "pca")
    assert query.spec == "clean" and panels.embeddings is None and panels.distances is None
    distances = panels.numbers.query_cosine_distance
    assert set(distances) == {"Baseline", "Vittle (L)"}
    assert all(value == pytest.approx(0.0, abs=1e-9) for value in distances.values())  # BLAS rounding: 0 or ~1e-16
    assert panels.variance is not None


def test_robustness_reads_the_lab(service, tmp_path):
    import json

    from vittle.analysis.lab import LabSummary
    from vittle.analysis.lab.card import CardData
    from vittle.analysis.lab.report import fmt
    from vittle.app.model_facts import robustness_view

    lab = LabSummary.load(service.config.lab)
    # the embedded models come from the staged study: the first lab's rows are not shown as theirs
    table, figure = service.robustness("vittle-l")
    assert "| model | seeds |" not in table  # none of the first lab's rows
    assert [trace.y for trace in figure.data][1][0] == "Vittle (F) (8)" and figure.data[1].xaxis == "x2"  # the forest plot
    assert "The app's models (Baseline: unit b0-s0, Vittle (L): unit b0-s0)" in table  # the staged study's numbers instead
    assert "| Vittle (L) (shown) | 8 |" in table and "| Vittle (F) |" in table
    first = lab.arms["vittle-f"].versus_baseline["label-keeping"]
    assert f"{first.mean:+.2f} points [{first.low:+.2f}, {first.high:+.2f}]" in table  # the first lab, named as another protocol
    # models exported by the first lab get its rows
    paths = {}
    for name, arm in (("baseline", "baseline"), ("vittle", "vittle-l")):
        folder = tmp_path / arm
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({}))
        data = CardData.load(Path(__file__).parents[2] / "assets" / "models" / "tiny-vittle-l" / "metrics.json").to_json()
        CardData(**{**data, "name": arm, "protocol": "fine-tune", "unit": "", "stages": {}}).save(folder / "metrics.json")
        paths[name] = str(folder)
    table, figure = robustness_view(lab, service.config.lab, paths, {"baseline": "Baseline", "vittle": "Vittle (L)"}, "vittle")
    assert "| Baseline |" in table and "| Vittle (L) |" in table
    clean = lab.arms["vittle-l"].clean["all"]
    assert f"| Vittle (L) | {clean.n} | {fmt(clean)} |" in table  # mean ± std over seeds (the mean alone for one seed)
    difference = lab.arms["vittle-l"].versus_baseline["label-keeping"]
    assert f"{difference.mean:+.2f} [{difference.low:+.2f}, {difference.high:+.2f}]" in table  # the paired interval
    assert {trace.name for trace in figure.data} - {None} == {"Baseline", "Vittle (L)"}



def test_models_in_neither_study_get_no_empty_plot(service, tmp_path):
    """A --compare pair that neither study trained: the table says so and the plot is hidden, not an empty box."""
    import plotly.graph_objects as go

    from vittle.analysis.lab import LabSummary
    from vittle.app.model_facts import robustness_view
    from vittle.app.page import CSS
    from vittle.app.ui import fit_width

    paths = {}
    for name in ("baseline", "vittle"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        paths[name] = str(tmp_path / name)
    table, figure = robustness_view(LabSummary.load(service.config.lab), service.config.lab, paths,
                                    {"baseline": "Baseline", "vittle": "Mine"}, "vittle")
    assert figure is None and "Mine" in table
    assert fit_width(figure) is None and "#robustness-plot:has(.empty)" in CSS  # the page hides Gradio's empty plot
    assert fit_width(go.Figure(layout={"width": 500})).layout.width is None  # the container's width

def test_robustness_without_lab_results(service, tmp_path):
    from vittle.app.config import ServiceConfig
    from vittle.app.service import DemoService

    other = DemoService(ServiceConfig(lab=str(tmp_path / "missing.json"), staged=None, warm_umap=False, precompute=False))
    table, figure = other.robustness("vittle-f")
    assert figure is None and "Baseline comes from the staged study" in table and "The first robustness lab" not in table
    assert table.startswith("The robustness lab's results are not shown: its file missing.json is missing or unreadable")
    assert str(tmp_path) not in table  # no server path on the page


def test_precompute_embeds_every_visual_setting_in_the_background(tmp_path):
    import time

    from vittle.app.config import ServiceConfig
    from vittle.app.service import DemoService

    class TwoSettings(DemoService):
        def precompute_settings(self):
            return ["contrast:1", "fog:1"]

    assert len(DemoService.precompute_settings(None)) == 45  # 9 visual corruptions x 5 severities
    service = TwoSettings(ServiceConfig(warm_umap=False, reference_images=6, vittle_l=None, cache_dir=tmp_path)).start()
    assert service.wait_ready(300) and service.startup_error is None
    deadline = time.monotonic() + 120
    while service.precomputed != (2, 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert service.precomputed == (2, 2) and service.status().endswith("(ready).")
    for name in ("baseline", "vittle-f"):
        assert (name, "contrast:1") in service.references.cache and (name, "fog:1") in service.references.cache
    assert service.references.cache.computed == 8  # clean, the default setting and the two, per model; nothing twice
    service.close()


def test_a_turn_does_not_prefetch_while_the_warm_up_runs(service, monkeypatch):
    """At start-up the warm-up embeds the default setting's reference sets as warm-up work, which
    waits for a turn's answers (`Foreground`); a turn's own prefetch would not: while the warm-up
    runs, the turn leaves its reference sets to its panels."""
    import threading

    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(service.references, "prefetch", lambda spec, vittle: asked.append((spec, vittle)))
    query = service.prepare(easy_vqa.get_test_image_paths()[2], "What color is the shape?", "frost", 3, "none", 3)
    release = threading.Event()
    still = threading.Thread(target=release.wait)  # a warm-up still under way
    monkeypatch.setattr(service.warm_up, "_thread", still)
    still.start()
    try:
        assert service.warm_up.running
        with service.answering():
            first = list(service.answers(query, "vittle-f"))[-1]
        assert asked == []
    finally:
        release.set()
        still.join()
    assert not service.warm_up.running
    assert list(service.answers(query, "vittle-f"))[-1] == first and asked == [("frost:3", "vittle-f")]


def test_a_new_settings_reference_sets_start_with_its_answers_and_run_side_by_side(service):
    """The answers of a turn on a new setting start both models' reference embeddings in the
    background (the panels then find them done or under way), and `references` asks the two
    models' workers at the same time."""
    import time

    query = service.prepare(easy_vqa.get_test_image_paths()[1], "What shape is it?", "zoom_blur", 5, "word_delete", 1)
    assert query.spec == "zoom_blur:5+word_delete:1"
    assert ("baseline", query.spec) not in service.references.cache and ("vittle-f", query.spec) not in service.references.cache
    list(service.answers(query, "vittle-f"))  # no panels asked for
    deadline = time.monotonic() + 120
    while not all((name, query.spec) in service.references.cache for name in ("baseline", "vittle-f")):
        assert time.monotonic() < deadline, "the reference sets were not prefetched"
        time.sleep(0.05)
    embeds = {name: service.worker(name).jobs["embed"] for name in ("baseline", "vittle-f")}
    panels = service.panels(query, "vittle-f")
    assert {name: service.worker(name).jobs["embed"] for name in embeds} == embeds  # nothing embedded twice
    assert panels.specs["embeddings"] is not None and len(panels.numbers.reference_cosine_mean) == 2
    refs = service.references.for_models(["baseline", "vittle-f"], query.spec)
    assert set(refs) == {"baseline", "vittle-f"} and refs["baseline"][query.spec].shape == (service.config.reference_images, 128)


def test_under_load_the_maps_answers_wait_for_a_quiet_moment_and_a_later_map_has_them(service):
    """The reference queries' answers only decorate the map's hover and cost more than its
    embeddings: with other users' jobs waiting a turn leaves them out, and they are computed
    once the models are quiet, for the next map of the setting."""
    import json
    import time

    from vittle.analysis.perturb import CLEAN

    query = service.prepare(easy_vqa.get_test_image_paths()[2], "What color is it?", "fog", 2, "char_delete", 4)
    labels = {"baseline": "Baseline", "vittle-f": "Vittle (F)"}
    generated = {name: service.worker(name).jobs["answers"] for name in labels}
    busy = service.references.view(query.spec, labels, now=False)
    assert busy.answers_pending and busy.answers == {}
    assert len(busy.thumbnails["perturbed"]) == service.config.reference_images
    deadline = time.monotonic() + 120
    while not all(service.references.has_answers(name, query.spec) for name in labels):
        assert time.monotonic() < deadline, "the deferred answers were never computed"
        time.sleep(0.05)
    assert all(service.worker(name).jobs["answers"] > generated[name] for name in labels)
    later = service.references.view(query.spec, labels, now=False)
    assert not later.answers_pending and set(later.answers) == {"Baseline", "Vittle (F)"}
    assert later.answers["Baseline"]["perturbed"] == service.references.answers("baseline", query.spec)[query.spec]
    assert later.answers["Baseline"]["clean"] == service.references.answers("baseline", query.spec)[CLEAN]
    with service.turn():  # one request alone is no load; a second one in progress is
        assert not service.busy
        with service.turn():
            assert service.busy
    assert not service.busy  # nothing in progress now: a turn's map computes its answers at once
    panels = service.panels(query, "vittle-f")
    hover = json.dumps(panels.specs["embeddings"])
    assert "not computed yet" not in hover and "Vittle (F): " in hover


def test_the_precompute_waits_until_users_have_been_quiet(service):
    """The background precompute embeds its next setting only after `precompute_quiet_s`
    without a user query, so it never slows a user's turn."""
    import time

    started = time.monotonic()
    service.models.wait_quiet(0.0)
    assert time.monotonic() - started < 0.1
    before = time.monotonic()
    service.worker("baseline").probe(None, "what color is the shape?").result()  # a user query, just now
    service.models.wait_quiet(0.6)
    assert 0.6 <= time.monotonic() - before < 10
    assert time.monotonic() - service.worker("baseline").last_query >= 0.6


def test_a_text_shift_over_an_embedded_visual_setting_reuses_its_image_prefixes(tmp_path):
    """The app keeps each reference image's prompt prefix: a combination whose visual part is
    already embedded runs only the perturbed questions, and its embeddings equal the full
    computation's."""
    from vittle.analysis.representations import extract
    from vittle.app.config import ServiceConfig
    from vittle.app.service import DemoService
    from vittle.inference import Assistant

    service = DemoService(ServiceConfig(warm_umap=False, reference_images=12, precompute=False, cache_dir=tmp_path,
                                        default_spec="frost:2")).start()
    assert service.wait_ready(300) and service.startup_error is None
    prefixes = service.assistant("baseline").prefix_cache
    assert prefixes is not None and len(prefixes) == 24  # the warm-up embedded the clean and the frost:2 images
    hits = prefixes.hits
    combined = service.reference("baseline", "frost:2+word_delete:4")["frost:2+word_delete:4"]
    assert prefixes.hits - hits == 12
    samples, variants = service.references.samples()
    plain = Assistant.load(service.paths["baseline"], device="cpu")
    expected = extract(plain, samples, ["frost:2+word_delete:4"], cache_dir=tmp_path / "plain", progress=False, variants=variants)
    assert np.allclose(combined, expected["frost:2+word_delete:4"], atol=1e-4)
    service.close()


def test_answers_are_capped_to_what_the_models_were_trained_to_give(service, tmp_path):
    """The embedded models answer in one word: a free-form question gets at most 4 tokens, not
    runaway repetition; the cap is a setting for models that answer in sentences."""
    from vittle.app.config import ServiceConfig
    from vittle.app.service import DemoService

    assert service.config.max_new_tokens == 0 and service.max_new_tokens == 4
    query = service.prepare(easy_vqa.get_test_image_paths()[0], "Describe everything you see in great detail.")
    answers = list(service.answers(query))[-1]
    tokenizer = service.assistant("baseline").processor.tokenizer
    assert all(len(tokenizer(answer, add_special_tokens=False)["input_ids"]) <= 4 for answer in answers.values()), answers
    assert DemoService(ServiceConfig(max_new_tokens=32, warm_umap=False, precompute=False)).max_new_tokens == 32
    with pytest.raises(ValueError, match="max_new_tokens=-1 must be 0"):
        ServiceConfig(max_new_tokens=-1)


def test_the_finding_and_the_answer_marks_say_what_happened(service):
    from vittle.app.presentation import answer_marks

    finding = service.finding()
    assert "**Baseline**: no bottleneck" in finding
    # the embedded models come from the staged study (assets/models/*/metrics.json): their posterior is used
    assert "**Vittle (F)**: bottleneck after layer 3, fixed prior, alpha 0.5; its posterior carries information" in finding
    assert "the posterior mean alone (alpha 1) answers 94% of the colour/shape questions (staged study, unit b0-s0" in finding
    assert "**Vittle (L)**: bottleneck after layer 3, learnable prior" in finding
    assert "-0.63 points" not in finding  # the first lab's interval (assets/lab.json) is not theirs
    marks = answer_marks({"baseline_clean": "red", "baseline_perturbed": "blue", "vittle_clean": "red", "vittle_perturbed": "Red."},
                         "Vittle (F)")
    assert marks == ("Baseline: **flipped** (red → blue) · Vittle (F): kept its answer · "
                     "the models **disagree** on the perturbed query")
    assert answer_marks({"baseline_clean": "red"}, "Vittle (F)") == ""  # not all four yet


def test_the_page_says_what_the_models_can_answer_and_that_a_gloss_is_not_a_translation(service):
    from vittle.analysis.perturb import get_translator

    text = service.answerable()
    assert "red, green, blue" in text and "circle, rectangle, triangle" in text and "yes/no" in text
    if not getattr(get_translator(), "is_gloss", False):
        pytest.skip("a real translation backend is configured here")
    query = service.prepare(easy_vqa.get_test_image_paths()[0], "what color is the shape?", "none", 3, "greek", 3)
    assert any("offline word-by-word gloss" in note for note in query.notes)
    plain = service.prepare(easy_vqa.get_test_image_paths()[0], "what color is the shape?", "none", 3, "char_typo", 3)
    assert not any("gloss" in note for note in plain.notes)


def test_the_domain_score_flags_a_photo_and_not_an_easy_vqa_image(service):
    """The query image's domain score, from Python (the page's badge and turn.json hold the same)."""
    from skimage import data

    assert service.domain_check.applicable and service.domain_check.ready
    photo = service.domain(service.prepare(Image.fromarray(data.chelsea()), "what color is the shape?", "none", 3, "none", 3))
    shape = service.domain(service.prepare(easy_vqa.get_test_image_paths()[7], "what color is the shape?", "none", 3, "none", 3))
    assert photo.outside and "the answers are guesses" in photo.badge()
    assert not shape.outside and shape.badge() == "" and shape.threshold == photo.threshold
    assert "domain_seconds" in service.warm_up.timings  # calibrated (or read back from the disk cache) in the warm-up


def test_a_photo_sent_before_the_calibration_finished_still_gets_its_badge(service):
    """A turn in the app's first seconds, before the warm-up has calibrated the domain score:
    the verdict waits for (or runs) the calibration instead of leaving the photo unscored."""
    from skimage import data

    from vittle.analysis.domain import DomainReference
    from vittle.app.domain import DomainCheck
    from vittle.files import default_cache_dir

    fresh = DomainCheck(service.models)  # not calibrated yet, as at start-up
    assert not fresh.ready
    photo = fresh.verdict(Image.fromarray(data.chelsea()))
    assert fresh.ready and photo is not None and photo.outside
    assert photo.threshold == pytest.approx(service.domain_check.reference().threshold, abs=1e-4)
    kept = list(Path(service.config.cache_dir or default_cache_dir()).glob("*/domain-*.npz"))  # kept for the next start
    assert kept and any(abs(DomainReference.load(p).threshold - photo.threshold) < 1e-4 for p in kept)


def test_the_second_column_can_be_any_checkpoint_named_by_its_card():
    """`--compare NAME=PATH` adds models to the second column's choice; a staged-study model is
    named by its card's method and unit, and answers as the same weights do under another name."""
    from vittle.app.config import ServiceConfig
    from vittle.app.service import DemoService

    compared = DemoService(ServiceConfig(compare=("again=embedded:tiny-vittle-l",), precompute=False, reference_images=24,
                                         vittle_l=None)).start()
    try:
        assert compared.wait_models(300) and compared.startup_error is None
        assert compared.vittle_choices == [("Vittle (F)", "vittle-f"), ("Vittle (L) (b0-s0)", "again")]
        query = compared.prepare(easy_vqa.get_test_image_paths()[2], "what shape is this?", "zoom_blur", 3, "none", 3)
        answers = list(compared.answers(query, "again"))[-1]
        assert answers["vittle_clean"] and compared.training_alpha("again") == compared.training_alpha("vittle-f")
    finally:
        compared.close()
    for entries, message in ((("vittle-f=x",), "not one of baseline"), (("nope",), "must look like NAME=PATH"),
                             (("a=embedded:none", ), "not in this installation"), (("a=x", "a=y"), "given twice")):
        with pytest.raises(ValueError, match=message):
            ServiceConfig(compare=entries)


@pytest.mark.slow
def test_a_umap_map_from_the_umap_process_equals_the_one_made_in_the_server(service):
    """With `warm_umap` the app fits UMAP maps in a process of its own (compiled while the models
    load): the map and the query's placed points are the ones the server's own UMAP gives, and a
    map whose process was restarted is fitted again instead of failing the turn."""
    from vittle.analysis.umap_process import UmapProcess

    query = service.prepare(easy_vqa.get_test_image_paths()[3], "what shape is in the image?", "defocus_blur", 2, "none", 3)
    spec = query.spec
    service.references.forget_analysis("umap", spec, "vittle-f")
    here = service.panels(query, "vittle-f", "umap").numbers
    local = service.references.analysis("umap", spec, "vittle-f")
    service.umap = UmapProcess(service.config.seed)
    try:
        service.references.forget_analysis("umap", spec, "vittle-f")
        there = service.references.analysis("umap", spec, "vittle-f")
        assert there.projection._umap.__class__.__name__ == "RemoteMap"
        for name in local.coordinates:
            for role, xy in local.coordinates[name].items():
                np.testing.assert_allclose(there.coordinates[name][role], xy, atol=1e-4)
        service.umap._process.kill()
        service.umap._process.wait()
        again = service.panels(query, "vittle-f", "umap")  # MapLost inside: the map is fitted again in a new child
        assert again.specs["embeddings"] is not None and service.umap.alive
        assert again.numbers.reference_cosine_mean == pytest.approx(here.reference_cosine_mean)
    finally:
        service.umap.close()
        service.umap = None
        service.references.forget_analysis("umap", spec, "vittle-f")
