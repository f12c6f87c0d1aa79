"""Representation metrics: cosine distances, von Neumann entropy, matrix JSD, CLUB and EMID."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from vittle.analysis.metrics import (
    CLUBEstimator,
    club_mutual_information,
    cosine_distances,
    emid,
    representation_jsd,
    von_neumann_entropy,
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """CLUB's tiny MLP gains nothing from intra-op threads; on a busy machine they spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def correlated_gaussians(rho: float, d: int = 4, n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """y = rho x + sqrt(1 - rho^2) e with x, e ~ N(0, I_d): I(x; y) = -d/2 log(1 - rho^2)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))


def club_closed_form(rho: float, d: int = 4) -> float:
    """I_CLUB with the true conditional N(rho x, (1 - rho^2) I): pairs give E|y - rho x|^2 =
    d (1 - rho^2), independent draws d (1 + rho^2); divided by 2 (1 - rho^2) and subtracted."""
    return d * rho**2 / (1 - rho**2)


def test_cosine_distances_match_numpy():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((50, 8)), rng.standard_normal((50, 8))
    expected = np.array([1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(X, Y)])
    np.testing.assert_allclose(cosine_distances(X, Y), expected, atol=1e-12)
    np.testing.assert_allclose(cosine_distances(X, X), 0.0, atol=1e-12)
    np.testing.assert_allclose(cosine_distances(X, -3 * X), 2.0, atol=1e-12)
    assert cosine_distances(X, Y).shape == (50,)


def test_cosine_distance_of_zero_rows_is_one():
    X = np.array([[0.0, 0.0], [1.0, 0.0]])
    Y = np.array([[1.0, 2.0], [0.0, 0.0]])
    np.testing.assert_allclose(cosine_distances(X, Y), [1.0, 1.0], rtol=0, atol=1e-12)


def test_cosine_distance_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(3, 5\)"):
        cosine_distances(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"2-D.*\(4,\)"):
        cosine_distances(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"\(0, 4\)"):
        cosine_distances(np.ones((0, 4)), np.ones((0, 4)))


def test_von_neumann_entropy_by_hand():
    assert von_neumann_entropy(np.eye(5)) == pytest.approx(math.log(5))
    assert von_neumann_entropy(np.outer(np.arange(1, 7), [1.0, -2.0, 0.5])) == pytest.approx(0.0, abs=1e-9)
    # columns scaled 1 and sqrt(3): eigenvalues 1/4, 3/4
    X = np.array([[1.0, 0.0], [0.0, math.sqrt(3)]])
    assert von_neumann_entropy(X) == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    # wide and tall inputs take different Gram matrices, same entropy
    W = np.random.default_rng(0).standard_normal((6, 40))
    assert von_neumann_entropy(W) == pytest.approx(von_neumann_entropy(W.T))
    with pytest.raises(ValueError, match="all-zero"):
        von_neumann_entropy(np.zeros((3, 3)))


def test_jsd_identity_symmetry_and_bounds():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((300, 16)), rng.standard_normal((200, 16)) + 1.5
    assert representation_jsd(X, X) == pytest.approx(0.0, abs=1e-9)
    assert representation_jsd(X, Y) == pytest.approx(representation_jsd(Y, X), abs=1e-12)
    assert 0.0 < representation_jsd(X, Y) <= math.log(2)
    # orthogonal supports reach the upper bound log 2
    assert representation_jsd(np.eye(4)[:2], np.eye(4)[2:]) == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match=r"\(300, 16\) and \(5, 3\)"):
        representation_jsd(X, np.ones((5, 3)))


def test_jsd_grows_with_mean_shift():
    rng = np.random.default_rng(0)
    clean, noise = rng.standard_normal((500, 16)), rng.standard_normal((500, 16))
    direction = np.ones(16) / 4.0  # unit norm
    values = [representation_jsd(clean, noise + shift * direction) for shift in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert all(a < b for a, b in itertools.pairwise(values)), values
    assert values[-1] <= math.log(2)


def test_club_negative_term_matches_all_pairs():
    torch.manual_seed(0)
    model = CLUBEstimator(3, 2, hidden=8)
    x, y = torch.randn(30, 3), torch.randn(30, 2)
    with torch.no_grad():
        mu, logvar = model.conditional(x)
        # log q(y_j | x_i) for every (i, j), Gaussian constants dropped (they cancel)
        log_q = -0.5 * (((y[None, :, :] - mu[:, None, :]) ** 2) / logvar.exp()[:, None, :] + logvar[:, None, :]).sum(-1)
        brute = log_q.diagonal().mean() - log_q.mean()
        assert float(model(x, y)) == pytest.approx(float(brute), rel=1e-5)


@pytest.mark.parametrize("rho", [0.5, 0.6])
def test_club_matches_gaussian_closed_form(rho):
    x, y = correlated_gaussians(rho)
    true_mi = -4 / 2 * math.log(1 - rho**2)
    assert club_closed_form(rho) > true_mi  # CLUB upper-bounds the MI
    assert club_mutual_information(x, y) == pytest.approx(club_closed_form(rho), rel=0.15)


def test_club_orders_dependence_and_is_deterministic():
    estimates = [club_mutual_information(*correlated_gaussians(rho)) for rho in (0.2, 0.5, 0.8)]
    assert estimates[0] < estimates[1] < estimates[2], estimates
    assert club_mutual_information(*correlated_gaussians(0.2)) == estimates[0]
    with pytest.raises(ValueError, match=r"\(10, 2\) and \(9, 2\)"):
        club_mutual_information(np.ones((10, 2)), np.ones((9, 2)))
    with pytest.raises(ValueError, match="validation"):
        club_mutual_information(np.ones((10, 2)), np.ones((10, 2)), validation=1.5)


def test_emid_is_the_clean_minus_perturbed_mi():
    clean_q, clean_a = correlated_gaussians(0.8, n=1000, seed=1)
    perturbed_q, perturbed_a = correlated_gaussians(0.3, n=1000, seed=2)
    result = emid(clean_q, clean_a, perturbed_q, perturbed_a, steps=300)
    assert set(result) == {"mi_clean", "mi_perturbed", "emid"}
    assert result["emid"] == pytest.approx(result["mi_clean"] - result["mi_perturbed"])
    assert result["emid"] > 0  # the perturbation destroyed dependence


def test_categorical_mi_is_bounded_and_ordered():
    from vittle.analysis.metrics import categorical_mutual_information, club_mutual_information

    rng = np.random.default_rng(0)
    n = 2000
    X = rng.standard_normal((n, 32))
    determined = (X[:, 0] > 0).astype(int) * 2 + (X[:, 1] > 0)  # I(X; A) = log 4
    half = np.where(rng.random(n) < 0.5, rng.integers(0, 4, n), determined)  # I = log 4 - 1.073 = 0.313
    independent = rng.integers(0, 4, n)
    estimates = [categorical_mutual_information(X, labels) for labels in (determined, half, independent)]
    assert 0.8 * math.log(4) < estimates[0] <= math.log(4) + 0.02
    assert 0.05 < estimates[1] < 0.313 + 0.02  # a lower bound
    assert estimates[2] < 0.02
    assert categorical_mutual_information(X, ["same"] * n) == pytest.approx(0.0, abs=1e-12)
    # CLUB on the same answers as points in 384 dims explodes far past log 4: why the report switches estimator
    codes = rng.standard_normal((4, 384))
    assert club_mutual_information(X[:400], codes[determined[:400]], steps=300) > 10 * math.log(4)
    with pytest.raises(ValueError, match=r"labels must be one per row of X \(2000\)"):
        categorical_mutual_information(X, determined[:10])
