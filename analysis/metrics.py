"""Representation metrics for robustness analysis: arrays in, numbers out.

All inputs are 2-D float arrays with one row per sample (e.g. the last input token's layer-l
hidden state). Entropies and mutual informations are in nats (natural log).

- `cosine_distances(X, Y)`: d_i = 1 - <x_i, y_i> / (|x_i| |y_i|) for row-paired clean/perturbed
  samples, in [0, 2]. A pair with a zero-norm row has no direction; its distance is defined
  as 1.0 (the value for orthogonal rows) rather than NaN.
- `von_neumann_entropy(X)`: H(C) = -sum_k l_k log l_k over the eigenvalues l_k > 0 of the
  trace-normalised, *uncentred* feature covariance C = X^T X / tr(X^T X). It lies in
  [0, log rank(X)]: 0 when all rows are collinear, log d when the features are isotropic.
- `representation_jsd(X, Y)`: the matrix-based Jensen-Shannon divergence
  JSD = H((C_X + C_Y) / 2) - (H(C_X) + H(C_Y)) / 2, the mixture being the average of the two
  trace-normalised covariances (each set weighs 1/2 whatever its number of rows). It is
  symmetric, 0 for identical sets, and in [0, log 2].
- `club_mutual_information(X, Y)`: the CLUB upper bound of I(X; Y) (Cheng et al., ICML 2020).
  A variational q(y|x) = N(mu(x), diag(exp(logvar(x)))) is fitted by maximum likelihood on
  the pairs; then I_CLUB = mean_i log q(y_i|x_i) - mean_{i,j} log q(y_j|x_i). With the true
  conditional of y = rho x + sqrt(1 - rho^2) e (d dims, unit variances) it equals
  d rho^2 / (1 - rho^2), above the true MI -d/2 log(1 - rho^2).
- `categorical_mutual_information(X, labels)`: I(X; A) for a categorical A (e.g. one-word
  answers) as H(A) - CE, the held-out cross-entropy of a softmax classifier of A from X: a
  variational lower bound (Barber and Agakov, 2003), never above log(number of classes) by
  more than the held-out marginal's estimation error. CLUB is not usable there: with a few
  distinct answer points its Gaussian q(y|x) shrinks onto them and the estimate grows without
  bound (hundreds of nats where log k is ~1.4).
- `emid(...)`: the effective mutual information difference (EMID) of Oh et al. (2025),
  I(clean query; clean answer) - I(perturbed query; perturbed answer), each term a CLUB
  estimate on embedding pairs. Lower is more robust.

Where the defaults differ from the papers:
- CLUB's reference code bounds logvar with tanh (variance in [e^-1, e]); here logvar is free
  (clamped to [-10, 10] for stability) so strongly dependent pairs are not capped.
- The negative term mean_{i,j} is computed exactly for every n in O(n d), using
  mean_j (y_jk - m)^2 = var_j(y_k) + (mean_j y_jk - m)^2, instead of O(n^2) pairs or a
  random permutation (the paper's large-n shortcut).
- Inputs are z-scored per dimension (X and Y each with their own statistics) before fitting.
- q is fitted on 70% of the pairs with early stopping on the held-out 30%, and the estimate
  is taken on those held-out pairs. On a finite sample an MLP variance head overfits: its
  variances shrink and the training-pair estimate inflates (+20-50% for 4-d Gaussians
  after 1,000 steps).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

_LOGVAR_LIMIT = 10.0
_CHECK_EVERY = 50  # CLUB training steps between held-out log-likelihood checks
_PATIENCE = 5  # checks without improvement before CLUB training stops


def _as_matrix(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array with at least one row and column, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def _same_width(X: np.ndarray, Y: np.ndarray, names: str = "X and Y") -> None:
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"{names} must have the same number of columns, got shapes {X.shape} and {Y.shape}")


def cosine_distances(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Row-paired cosine distance 1 - cos(x_i, y_i), shape (n,), values in [0, 2].

    Rows with zero norm (in X or Y) get distance 1.0, never NaN."""
    X, Y = _as_matrix(X, "X"), _as_matrix(Y, "Y")
    if X.shape != Y.shape:
        raise ValueError(f"X and Y must have the same shape (row-paired samples), got {X.shape} and {Y.shape}")
    norms = np.linalg.norm(X, axis=1) * np.linalg.norm(Y, axis=1)
    dots = np.einsum("ij,ij->i", X, Y)
    cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return 1.0 - np.clip(cos, -1.0, 1.0)


def _entropy_of_rows(Z: np.ndarray) -> float:
    """Von Neumann entropy of Z^T Z / tr(Z^T Z), from the smaller of Z^T Z and Z Z^T (same
    non-zero eigenvalues)."""
    gram = Z.T @ Z if Z.shape[1] <= Z.shape[0] else Z @ Z.T
    trace = np.trace(gram)
    if trace <= 0:
        raise ValueError("entropy is undefined for an all-zero matrix (trace of X^T X is 0)")
    eigenvalues = np.linalg.eigvalsh(gram / trace)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    return float(-np.sum(eigenvalues * np.log(eigenvalues)))


def von_neumann_entropy(X: np.ndarray) -> float:
    """H = -sum_k l_k log l_k (nats) over the eigenvalues l_k > 0 of C = X^T X / tr(X^T X),
    the trace-normalised uncentred covariance of the rows of X (n, d)."""
    return _entropy_of_rows(_as_matrix(X, "X"))


def representation_jsd(X: np.ndarray, Y: np.ndarray) -> float:
    """Matrix-based JSD (nats) between a clean set X (n, d) and a perturbed set Y (m, d):
    H((C_X + C_Y) / 2) - (H(C_X) + H(C_Y)) / 2, with C the trace-normalised uncentred
    covariances of `von_neumann_entropy`. In [0, log 2]; 0 iff C_X == C_Y."""
    X, Y = _as_matrix(X, "X"), _as_matrix(Y, "Y")
    _same_width(X, Y)
    norm_x, norm_y = np.linalg.norm(X), np.linalg.norm(Y)
    if norm_x == 0 or norm_y == 0:
        raise ValueError("JSD is undefined for an all-zero set (trace of its covariance is 0)")
    # (C_X + C_Y) / 2 = Z^T Z for Z = [X / sqrt(2 tr X^T X); Y / sqrt(2 tr Y^T Y)]
    mixture = np.vstack([X / (math.sqrt(2) * norm_x), Y / (math.sqrt(2) * norm_y)])
    jsd = _entropy_of_rows(mixture) - (_entropy_of_rows(X) + _entropy_of_rows(Y)) / 2
    return max(jsd, 0.0)  # only round-off can make it negative


class CLUBEstimator(nn.Module):
    """q(y|x) = N(mu(x), diag(exp(logvar(x)))) with one-hidden-layer MLPs for mu and logvar."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, y_dim))
        self.logvar = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, y_dim))

    def conditional(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (n, y_dim)."""
        return self.mu(x), self.logvar(x).clamp(-_LOGVAR_LIMIT, _LOGVAR_LIMIT)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """mean_i log q(y_i|x_i) in nats, Gaussian constant included: the training objective."""
        mu, logvar = self.conditional(x)
        return (-0.5 * ((y - mu) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi))).sum(1).mean()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """I_CLUB = mean_i log q(y_i|x_i) - mean_{i,j} log q(y_j|x_i), exact in O(n d).

        The logvar and 2 pi terms cancel between the two means, leaving
        sum_k [var_j(y_k) + (mean_j y_jk - mu_ik)^2 - (y_ik - mu_ik)^2] / (2 exp(logvar_ik))."""
        mu, logvar = self.conditional(x)
        inv_var = (-logvar).exp()
        positive = -0.5 * ((y - mu) ** 2 * inv_var).sum(1)
        spread = y.var(0, unbiased=False) + (y.mean(0) - mu) ** 2  # mean_j (y_j - mu_i)^2
        negative = -0.5 * (spread * inv_var).sum(1)
        return (positive - negative).mean()


def _held_out_count(rows: int, validation: float) -> int:
    """How many of `rows` pairs a `validation` share holds out; ValueError if either side gets < 2."""
    if not 0.0 < validation < 1.0:
        raise ValueError(f"validation must be in (0, 1), got {validation}")
    n_val = round(validation * rows)
    if n_val < 2 or rows - n_val < 2:
        raise ValueError(f"{rows} pairs with validation={validation} leave fewer than 2 pairs to fit or to evaluate")
    return n_val


def _standardize(A: np.ndarray) -> torch.Tensor:
    std = A.std(0)
    return torch.as_tensor((A - A.mean(0)) / np.where(std > 0, std, 1.0), dtype=torch.float32)


def club_mutual_information(X: np.ndarray, Y: np.ndarray, steps: int = 2000, lr: float = 1e-3, batch_size: int = 256,
                            seed: int = 0, hidden: int = 64, validation: float = 0.3) -> float:
    """CLUB upper bound of I(X; Y) in nats for row-paired samples X (n, dx), Y (n, dy).

    A random `validation` share of the pairs is held out; q(y|x) is fitted on the rest with
    Adam (`batch_size` random pairs a step, at most `steps` steps). Every 50 steps the
    held-out log-likelihood is checked: the best q is kept, and training stops after 5 checks
    without improvement. The estimate is I_CLUB of that q on the held-out pairs. CPU,
    deterministic for a `seed`."""
    X, Y = _as_matrix(X, "X"), _as_matrix(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (paired samples), got shapes {X.shape} and {Y.shape}")
    n_val = _held_out_count(X.shape[0], validation)
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"steps, batch_size and lr must be positive, got {steps}, {batch_size}, {lr}")
    x, y = _standardize(X), _standardize(Y)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    val_x, val_y, fit_idx = x[order[:n_val]], y[order[:n_val]], order[n_val:]
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global RNG
        torch.manual_seed(seed)
        model = CLUBEstimator(x.shape[1], y.shape[1], hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    best_ll, best_state, checks_without_gain = -math.inf, copy.deepcopy(model.state_dict()), 0
    for step in range(1, steps + 1):
        idx = fit_idx[torch.randint(len(fit_idx), (min(batch_size, len(fit_idx)),), generator=generator)]
        loss = -model.log_likelihood(x[idx], y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % _CHECK_EVERY == 0:
            with torch.no_grad():
                ll = float(model.log_likelihood(val_x, val_y))
            if ll > best_ll:
                best_ll, best_state, checks_without_gain = ll, copy.deepcopy(model.state_dict()), 0
            else:
                checks_without_gain += 1
                if checks_without_gain >= _PATIENCE:
                    break
    if best_ll > -math.inf:
        model.load_state_dict(best_state)
    with torch.no_grad():
        return float(model(val_x, val_y))


def _principal_scores(X: np.ndarray, k: int) -> np.ndarray:
    """Rows of X on its top-k principal axes (up to per-axis scale), from the eigenvectors of
    the smaller of the two Gram matrices: exact, and fast for n x d with n or d in the thousands."""
    centred = X - X.mean(0)
    if centred.shape[0] <= centred.shape[1]:
        values, vectors = np.linalg.eigh(centred @ centred.T)
        top = np.argsort(values)[::-1][:k]
        return vectors[:, top] * np.sqrt(np.clip(values[top], 0.0, None))
    values, vectors = np.linalg.eigh(centred.T @ centred)
    return centred @ vectors[:, np.argsort(values)[::-1][:k]]


def categorical_mutual_information(X: np.ndarray, labels: np.ndarray | list, steps: int = 1000, lr: float = 1e-2,
                                   seed: int = 0, validation: float = 0.3, weight_decay: float = 1e-3,
                                   max_dims: int = 64) -> float:
    """Lower-bound estimate of I(X; A) in nats for rows X (n, d) and categorical labels (n,).

    A random `validation` share is held out; a linear softmax classifier p(a|x) is fitted on
    the rest (full-batch Adam, weight decay, early stopping on the held-out cross-entropy
    checked every 50 steps). The estimate is H(A) - CE on the held-out pairs, with H(A) the
    cross-entropy of the held-out labels under the fit split's label frequencies (add-one
    smoothed); clipped at 0. X wider than `max_dims` is first projected on its top `max_dims`
    principal axes (unsupervised, so no label leaks), which keeps a few hundred pairs from
    being memorised. CPU, deterministic for a `seed`."""
    X = _as_matrix(X, "X")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != X.shape[0]:
        raise ValueError(f"labels must be one per row of X ({X.shape[0]}), got shape {labels.shape}")
    n_val = _held_out_count(X.shape[0], validation)
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        return 0.0  # a constant answer carries no information
    if X.shape[1] > max_dims:
        X = _principal_scores(X, max_dims)
    x, y = _standardize(X), torch.as_tensor(codes, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    val, fit = order[:n_val], order[n_val:]
    counts = torch.bincount(y[fit], minlength=len(classes)).double() + 1.0
    marginal = float(-(counts / counts.sum()).log()[y[val]].mean())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Linear(x.shape[1], len(classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    best, checks_without_gain = math.inf, 0
    for step in range(1, steps + 1):
        loss = loss_fn(model(x[fit]), y[fit])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % _CHECK_EVERY == 0:
            with torch.no_grad():
                held_out = float(loss_fn(model(x[val]), y[val]))
            if held_out < best:
                best, checks_without_gain = held_out, 0
            else:
                checks_without_gain += 1
                if checks_without_gain >= _PATIENCE:
                    break
    if best == math.inf:
        with torch.no_grad():
            best = float(loss_fn(model(x[val]), y[val]))
    return max(marginal - best, 0.0)


def emid(clean_query: np.ndarray, clean_answer: np.ndarray, perturbed_query: np.ndarray,
         perturbed_answer: np.ndarray, **club_kwargs) -> dict[str, float]:
    """EMID = I(clean query; clean answer) - I(perturbed query; perturbed answer), nats.

    Each argument is an (n, d) array of embeddings, row i of a query paired with row i of its
    answer; both MIs are `club_mutual_information(..., **club_kwargs)`. Returns
    {"mi_clean", "mi_perturbed", "emid"}."""
    mi_clean = club_mutual_information(clean_query, clean_answer, **club_kwargs)
    mi_perturbed = club_mutual_information(perturbed_query, perturbed_answer, **club_kwargs)
    return {"mi_clean": mi_clean, "mi_perturbed": mi_perturbed, "emid": mi_clean - mi_perturbed}
