"""The domain score (vittle.analysis.domain): nearest-neighbour cosine distance in the models' own
image features, its calibrated threshold, the AUROC, and the embedded model telling a photo from
an easy-vqa image."""

from __future__ import annotations

import easy_vqa
import numpy as np
import pytest

from vittle.analysis.domain import DomainReference, DomainVerdict, auroc, offline_photos


def test_the_threshold_is_the_held_out_quantile_and_the_score_a_knn_distance():
    rng = np.random.default_rng(0)
    centre = np.array([1.0, 0.0, 0.0])
    train = centre + 0.05 * rng.standard_normal((200, 3))
    heldout = centre + 0.05 * rng.standard_normal((400, 3))
    reference = DomainReference.fit(train, heldout, k=5, quantile=0.9)
    assert reference.outside(heldout).mean() == pytest.approx(0.1, abs=0.01)  # 10% of the calibration set above it
    assert reference.score(train[:3]).max() < reference.threshold  # training images are inside
    far = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    assert reference.outside(far).all() and 0.8 < reference.score(far)[0] < 1.0  # about orthogonal to every training image
    with pytest.raises(ValueError, match="quantile=1.0 must be in"):
        DomainReference.fit(train, heldout, quantile=1.0)
    with pytest.raises(ValueError, match="at least 5 training images"):
        DomainReference.fit(train[:3], heldout)


def test_auroc_counts_pairs():
    assert auroc([0.1, 0.2], [0.3, 0.4]) == 1.0 and auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert auroc([0.1, 0.3], [0.2, 0.3]) == pytest.approx((1 + 0.5 + 1) / 4)
    with pytest.raises(ValueError, match="both kinds"):
        auroc([], [0.1])


def test_a_verdict_says_so_on_the_page_only_outside():
    assert DomainVerdict(0.1, 0.2).badge() == "" and not DomainVerdict(0.1, 0.2).outside
    verdict = DomainVerdict(0.5, 0.2)
    assert verdict.outside and "the answers are guesses" in verdict.badge() and "0.500" in verdict.badge()
    assert verdict.to_dict() == {"score": 0.5, "threshold": 0.2, "outside": True}


def test_the_embedded_model_tells_a_photo_from_an_easy_vqa_image():
    from vittle.inference import Assistant

    assistant = Assistant.load("assets/models/tiny-baseline", device="cpu")
    train = [easy_vqa.get_train_image_paths()[i] for i in range(60)]
    tests = easy_vqa.get_test_image_paths()
    heldout = [tests[i] for i in range(len(tests) - 50, len(tests))]
    reference = DomainReference.fit(assistant.image_features(train), assistant.image_features(heldout))
    photos = offline_photos()
    assert {"cat", "coffee", "astronaut"} <= set(photos)
    inside = reference.score(assistant.image_features([tests[i] for i in range(16)]))
    outside = reference.score(assistant.image_features([photos[name] for name in ("cat", "coffee", "astronaut")]))
    assert (outside > reference.threshold).all()
    assert (inside <= reference.threshold).mean() >= 0.8
    assert auroc(inside, outside) > 0.95


def test_a_saved_reference_reads_back_and_a_damaged_file_reads_as_none(tmp_path):
    """The app keeps its calibration between starts: the same scores from the file; a missing,
    cut-short or foreign file is None (the app calibrates again), never an error or a pickle."""
    rng = np.random.default_rng(1)
    reference = DomainReference.fit(rng.standard_normal((40, 8)), rng.standard_normal((20, 8)), k=3, quantile=0.8)
    path = tmp_path / "m" / "domain.npz"
    reference.save(path)
    again = DomainReference.load(path)
    probe = rng.standard_normal((5, 8))
    assert again is not None and (again.k, again.quantile) == (3, 0.8)
    np.testing.assert_allclose(again.score(probe), reference.score(probe), atol=1e-6)
    assert again.threshold == pytest.approx(reference.threshold)
    assert DomainReference.load(tmp_path / "missing.npz") is None
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:200])
    assert DomainReference.load(cut) is None
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, something=np.zeros(3))
    assert DomainReference.load(foreign) is None
