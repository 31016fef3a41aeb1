"""Distribution metrics on feature arrays (one row per image): Fréchet distance (FID, Heusel et al. 2017),
kernel distance (KID, Bińkowski et al. 2018), Inception Score (Salimans et al. 2016), improved precision/recall
(Kynkäänniemi et al. 2019) and the Parzen-window log-likelihood (Goodfellow et al. 2014). numpy, float64."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from img2img.errors import Img2ImgError


class MeanStd(NamedTuple):
    """A score over random subsets or splits; `std` is the population std (ddof=0), as the references report."""

    mean: float
    std: float


@dataclass(frozen=True)
class FrechetDistance:
    """FID and how it was reached. `max_imag`: largest imaginary part of sqrt(S1 S2) that was dropped (numerical
    residue); `offset`: eps added to both covariance diagonals because the product was singular (else 0)."""

    value: float
    max_imag: float
    offset: float
    method: str

    def __float__(self) -> float:
        return self.value


def _features(f: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"{name} must be an N x D feature array, got shape {f.shape}")
    if f.shape[0] < min_rows:
        raise Img2ImgError(f"{name} has {f.shape[0]} samples; this metric needs at least {min_rows}")
    if not np.isfinite(f).all():
        raise Img2ImgError(f"{name} holds NaN or infinite features")
    return f


def feature_statistics(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof=1) of N x D features, in float64."""
    f = _features(f, "features")
    return f.mean(axis=0), np.cov(f, rowvar=False)


# ---------------------------------------------------------------- FID


def _noise_floor(w: np.ndarray, n: int) -> float:
    # eigh is backward stable: eigenvalues below n * eps * max|w| cannot be told apart from 0.
    return float(np.abs(w).max()) * n * np.finfo(np.float64).eps


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    w = np.where(w > _noise_floor(w, s.shape[0]), w, 0.0)
    return (v * np.sqrt(w)) @ v.T


def _trace_sqrt_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> tuple[float, float]:
    """tr sqrt(S1 S2) as tr sqrt(R S2 R), R = S1^(1/2): the same eigenvalues, but a symmetric PSD matrix, so the
    eigenvalues are real and only rounding can make them negative. Eigenvalues under the rounding floor count as
    0: their square roots would otherwise add ~sqrt(eps) each, which is what makes FID(X, X) of a singular
    covariance come out as -1e-6 instead of 0. Returns (trace, imaginary residue sqrt(-min eigenvalue))."""
    r = _psd_sqrt(sigma1)
    m = r @ sigma2 @ r
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    kept = np.where(lam > _noise_floor(lam, m.shape[0]), lam, 0.0)
    return float(np.sqrt(kept).sum()), float(math.sqrt(max(0.0, -lam.min())))


def _trace_sqrt_scipy(sigma1: np.ndarray, sigma2: np.ndarray, eps: float, tol: float) -> tuple[float, float, float]:
    """pytorch-fid's route: scipy's sqrtm of the product, retried with eps*I on both covariances when the result
    is not finite. Returns (trace, largest imaginary part dropped, offset)."""
    from scipy import linalg

    offset = 0.0
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = eps
        eye = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + eye) @ (sigma2 + eye))
    max_imag = 0.0
    if np.iscomplexobj(covmean):
        max_imag = float(np.abs(covmean.imag).max())
        if np.abs(np.diagonal(covmean).imag).max() > tol:
            raise Img2ImgError(
                f"FID: sqrt(S1 S2) has an imaginary part of {max_imag:.3g} (tolerance {tol}); the covariances are "
                "ill-conditioned - use more images than feature dimensions, or method='eigh'"
            )
        covmean = covmean.real
    return float(np.trace(covmean)), max_imag, offset


def fid(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    *,
    method: str = "eigh",
    eps: float = 1e-6,
    imag_tol: float = 1e-3,
) -> FrechetDistance:
    """Fréchet distance ||mu1 - mu2||² + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    `method="eigh"` (default, numpy only) takes the trace of the square root from the eigenvalues of the symmetric
    form S1^(1/2) S2 S1^(1/2), which is stable for singular covariances (fewer images than dimensions);
    `method="sqrtm"` is pytorch-fid's scipy.linalg.sqrtm of S1 S2 with its eps*I retry. Either way an imaginary
    residue above `imag_tol` raises, and a smaller one is dropped and reported as `max_imag`.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"FID: shapes do not match: mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape}")
    offset = 0.0
    if method == "eigh":
        tr_covmean, max_imag = _trace_sqrt_eigh(sigma1, sigma2)
        if max_imag > imag_tol:
            raise Img2ImgError(f"FID: S1^(1/2) S2 S1^(1/2) has a negative eigenvalue (-{max_imag**2:.3g}); not PSD")
    elif method == "sqrtm":
        tr_covmean, max_imag, offset = _trace_sqrt_scipy(sigma1, sigma2, eps, imag_tol)
    else:
        raise ValueError(f"FID method must be 'eigh' or 'sqrtm', not {method!r}")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    return FrechetDistance(value=value, max_imag=max_imag, offset=offset, method=method)


def _trace_sqrt_gram(a: np.ndarray, b: np.ndarray) -> float:
    """tr sqrt(S1 S2) for S1 = A^T A / (n1 - 1), S2 = B^T B / (n2 - 1), A and B centred: the non-zero eigenvalues of
    S1 S2 are the squared singular values of A B^T / sqrt((n1 - 1)(n2 - 1)), so the trace is its nuclear norm."""
    c = math.sqrt((a.shape[0] - 1) * (b.shape[0] - 1))
    return float(np.linalg.svd(a @ b.T, compute_uv=False).sum() / c)


def fid_from_features(f1: np.ndarray, f2: np.ndarray, **kwargs) -> FrechetDistance:
    """FID between two N x D feature arrays (keyword arguments as for `fid`). With the default method and sets
    smaller than the feature dimension (N1 N2 <= D²) the same quantity comes from the N1 x N2 cross-Gram matrix
    (method "gram"): exact for the singular covariances of small sets, and O(N² D) instead of O(D³)."""
    f1, f2 = _features(f1, "first feature set"), _features(f2, "second feature set")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"FID: feature sizes differ ({f1.shape[1]} vs {f2.shape[1]})")
    (n1, d), n2 = f1.shape, f2.shape[0]
    if kwargs.get("method", "eigh") == "eigh" and n1 * n2 <= d * d:
        mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
        a, b = f1 - mu1, f2 - mu2
        traces = (a * a).sum() / (n1 - 1) + (b * b).sum() / (n2 - 1)
        value = float(((mu1 - mu2) ** 2).sum() + traces - 2 * _trace_sqrt_gram(a, b))
        return FrechetDistance(value=value, max_imag=0.0, offset=0.0, method="gram")
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2)
    return fid(mu1, s1, mu2, s2, **kwargs)


# ---------------------------------------------------------------- KID


def polynomial_mmd2(
    x: np.ndarray, y: np.ndarray, *, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> float:
    """Unbiased MMD² with the kernel k(a, b) = (gamma a·b + coef0)^degree, gamma = 1/D by default: the diagonal
    terms k(x_i, x_i) are left out of the within-set means (sizes may differ)."""
    x, y = _features(x, "x"), _features(y, "y")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    m, n = x.shape[0], y.shape[0]
    k_xx = (x @ x.T * gamma + coef0) ** degree
    k_yy = (y @ y.T * gamma + coef0) ** degree
    k_xy = (x @ y.T * gamma + coef0) ** degree
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kid(
    f1: np.ndarray,
    f2: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> MeanStd:
    """Kernel Inception Distance: mean and std of `polynomial_mmd2` over `subsets` random subsets of
    min(subset_size, N1, N2) rows drawn without replacement from each set. Subsets are drawn with
    `np.random.RandomState(seed).choice` (set 1, then set 2, per subset), the order torch-fidelity uses."""
    f1, f2 = _features(f1, "first feature set"), _features(f2, "second feature set")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"KID: feature sizes differ ({f1.shape[1]} vs {f2.shape[1]})")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets}, {subset_size}")
    m = min(subset_size, f1.shape[0], f2.shape[0])
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        a = f1[rng.choice(f1.shape[0], m, replace=False)]
        b = f2[rng.choice(f2.shape[0], m, replace=False)]
        mmds[i] = polynomial_mmd2(a, b, degree=degree, gamma=gamma, coef0=coef0)
    return MeanStd(float(mmds.mean()), float(mmds.std()))


# ---------------------------------------------------------------- Inception Score


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def inception_score(probs: np.ndarray, splits: int = 10, seed: int | None = None) -> MeanStd:
    """exp(E_x KL(p(y|x) || p(y))) per split, mean and std over `splits` contiguous splits (rows i*N//splits to
    (i+1)*N//splits), p(y) the mean prediction of the split. `probs`: N x C class probabilities. With `seed`, rows
    are first permuted by `np.random.RandomState(seed).permutation(N)` (as torch-fidelity does); without, the
    order given is kept (as the original TensorFlow code does)."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"inception_score takes an N x C probability array, got shape {p.shape}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("inception_score takes probabilities (rows >= 0 summing to 1); apply softmax to logits")
    if not 1 <= splits <= p.shape[0]:
        raise Img2ImgError(f"Inception Score: {splits} splits need at least {splits} images, got {p.shape[0]}")
    if seed is not None:
        p = p[np.random.RandomState(seed).permutation(p.shape[0])]
    n, scores = p.shape[0], []
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        p_y = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 log 0 = 0, for one-hot predictions
            kl = np.where(part > 0, part * (np.log(part) - np.log(p_y)), 0.0).sum(axis=1)
        scores.append(math.exp(kl.mean()))
    return MeanStd(float(np.mean(scores)), float(np.std(scores)))


# ---------------------------------------------------------------- precision / recall


class PrecisionRecall(NamedTuple):
    precision: float  # fraction of fake samples inside the real manifold
    recall: float  # fraction of real samples inside the fake manifold


def _sq_dists(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    d = (a * a).sum(axis=1)[:, None] + b_sq[None, :] - 2 * (a @ b.T)
    return np.maximum(d, 0.0, out=d)  # rounding can make |a|² + |b|² - 2ab slightly negative


def knn_radii_sq(f: np.ndarray, k: int, batch_size: int = 1024) -> np.ndarray:
    """Squared distance of each row to its k-th nearest other row (self excluded), batch_size rows at a time."""
    f = np.asarray(f, np.float64)
    f_sq = (f * f).sum(axis=1)
    out = np.empty(f.shape[0])
    for s in range(0, f.shape[0], batch_size):
        d = _sq_dists(f[s : s + batch_size], f, f_sq)
        out[s : s + batch_size] = np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself (distance 0)
    return out


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, batch_size: int = 1024) -> PrecisionRecall:
    """Improved precision and recall: each set's manifold is the union of balls reaching every sample's k-th
    nearest neighbour in its own set; precision = fraction of fake samples inside some real ball, recall = fraction
    of real samples inside some fake ball (a sample on a ball's boundary counts as inside). Distances are taken
    `batch_size` rows at a time, so memory is batch_size x N, not N²."""
    real, fake = _features(real, "real features", k + 1), _features(fake, "fake features", k + 1)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision/recall: feature sizes differ ({real.shape[1]} vs {fake.shape[1]})")
    r_real, r_fake = knn_radii_sq(real, k, batch_size), knn_radii_sq(fake, k, batch_size)
    real_sq = (real * real).sum(axis=1)
    fake_in_real = np.zeros(fake.shape[0], bool)
    real_in_fake = np.zeros(real.shape[0], bool)
    # One pass over the fake x real distances serves both directions.
    for s in range(0, fake.shape[0], batch_size):
        d = _sq_dists(fake[s : s + batch_size], real, real_sq)
        fake_in_real[s : s + batch_size] = (d <= r_real[None, :]).any(axis=1)
        real_in_fake |= (d <= r_fake[s : s + batch_size, None]).any(axis=0)
    return PrecisionRecall(float(fake_in_real.mean()), float(real_in_fake.mean()))


# ---------------------------------------------------------------- Parzen window


def _parzen_log_densities(train: np.ndarray, test: np.ndarray, sigmas: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """log p(x) = logsumexp_i(-||x - mu_i||² / 2σ²) - log N - d log(σ sqrt(2π)) for every test row and σ:
    an (N_test, len(sigmas)) array, with a running logsumexp over chunks of train rows."""
    n, d = train.shape
    train_sq = (train * train).sum(axis=1)
    inv = 1.0 / (2.0 * sigmas**2)
    out = np.empty((test.shape[0], sigmas.size))
    for s in range(0, test.shape[0], batch_size):
        acc = np.full((min(batch_size, test.shape[0] - s), sigmas.size), -np.inf)
        for t in range(0, n, batch_size):
            d2 = _sq_dists(test[s : s + batch_size], train[t : t + batch_size], train_sq[t : t + batch_size])
            z = -d2[:, :, None] * inv[None, None, :]
            top = z.max(axis=1)
            acc = np.logaddexp(acc, top + np.log(np.exp(z - top[:, None, :]).sum(axis=1)))
        out[s : s + batch_size] = acc
    return out - math.log(n) - d * np.log(sigmas * math.sqrt(2 * math.pi))[None, :]


def parzen_log_likelihood(train_samples: np.ndarray, test_samples: np.ndarray, sigma: float) -> np.ndarray:
    """Log-likelihood (nats) of each test sample under an isotropic Gaussian Parzen window of width `sigma`
    centred on the train samples (Goodfellow et al. 2014: centres are generated samples, test samples are real).

    Caveat (Theis et al. 2016, "A note on the evaluation of generative models"): in more than a few dimensions
    Parzen estimates are far from the true log-likelihood even with millions of samples, and rank models poorly;
    a high value says little about sample quality. Report it only next to other metrics, for comparison with older
    papers."""
    train, test = _features(train_samples, "train samples", 1), _features(test_samples, "test samples", 1)
    if train.shape[1] != test.shape[1] or not sigma > 0:
        raise ValueError(f"Parzen: need equal dimensions and sigma > 0 (got {train.shape}, {test.shape}, {sigma})")
    return _parzen_log_densities(train, test, np.array([float(sigma)]))[:, 0]


class SigmaChoice(NamedTuple):
    sigma: float  # the width with the highest mean validation log-likelihood
    scores: dict[float, float]  # mean validation log-likelihood per candidate width


def parzen_select_sigma(train: np.ndarray, valid: np.ndarray, sigmas) -> SigmaChoice:
    """Pick the Parzen width that maximises the mean log-likelihood of a validation set (Goodfellow et al. 2014)."""
    train, valid = _features(train, "train samples", 1), _features(valid, "validation samples", 1)
    grid = np.asarray(sorted(float(s) for s in sigmas))
    if grid.size == 0 or (grid <= 0).any() or train.shape[1] != valid.shape[1]:
        raise ValueError("Parzen: need positive sigmas and train/validation sets of equal dimension")
    means = _parzen_log_densities(train, valid, grid).mean(axis=0)
    scores = {float(s): float(m) for s, m in zip(grid, means, strict=True)}
    return SigmaChoice(float(grid[int(np.argmax(means))]), scores)
