"""Distribution metrics on feature arrays: closed forms (FID of Gaussians, IS of one-hot predictions, Parzen of
a Gaussian), sanity limits (identical / far-apart sets), batching invariance, and agreement with pytorch-fid,
torch-fidelity and torchmetrics on the same arrays."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from img2img.errors import Img2ImgError
from img2img.eval.distribution import (
    feature_statistics,
    fid,
    fid_from_features,
    inception_score,
    kid,
    knn_radii_sq,
    parzen_log_likelihood,
    parzen_select_sigma,
    polynomial_mmd2,
    precision_recall,
    softmax,
)


def _gauss(seed: int, n: int, d: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) * scale + shift


def _rotation(seed: int, d: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


# ---------------------------------------------------------------- FID


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_fid_of_identical_sets_is_zero(method: str) -> None:
    f = _gauss(0, 300, 24)
    r = fid_from_features(f, f.copy(), method=method)
    assert abs(r.value) < 1e-6 and r.offset == 0.0 and r.max_imag < 1e-3
    # Fewer images than dimensions: singular covariances. The eigenvalue route stays exact; scipy's sqrtm of the
    # product (pytorch-fid's) turns the rounding of the zero eigenvalues into a ~sqrt(eps) error per dimension.
    g = _gauss(1, 20, 64)
    mu, s = feature_statistics(g)
    assert abs(fid(mu, s, mu, s, method=method).value) < (1e-9 if method == "eigh" else 1e-4)


def test_fid_of_small_sets_goes_through_the_gram_matrix() -> None:
    a, b = _gauss(2, 20, 64), _gauss(3, 30, 64, shift=0.2, scale=1.3)
    r = fid_from_features(a, b)
    (m1, s1), (m2, s2) = feature_statistics(a), feature_statistics(b)
    assert r.method == "gram" and r.value == pytest.approx(fid(m1, s1, m2, s2).value, rel=1e-9)
    assert abs(fid_from_features(a, a.copy()).value) < 1e-9
    assert fid_from_features(_gauss(4, 100, 8), _gauss(5, 100, 8)).method == "eigh"  # N1 N2 > D²


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_fid_of_gaussians_with_shared_eigenvectors(method: str) -> None:
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: FID = |dmu|^2 + sum (sqrt a - sqrt b)^2.
    d = 6
    q = _rotation(3, d)
    a, b = np.linspace(0.5, 3.0, d), np.linspace(4.0, 0.2, d)
    mu1, mu2 = np.arange(d, dtype=float), np.arange(d, dtype=float)[::-1] * 0.5
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = fid(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T, method=method)
    assert got.value == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_fid_of_non_commuting_2d_gaussians(method: str) -> None:
    # For 2x2 matrices with non-negative eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    s1 = np.array([[2.0, 0.8], [0.8, 1.0]])
    s2 = np.array([[0.5, -0.3], [-0.3, 1.5]])
    tr_sqrt = math.sqrt(np.trace(s1 @ s2) + 2 * math.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.0, 0.5])
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert fid(mu1, s1, mu2, s2, method=method).value == pytest.approx(want, rel=1e-12)
    # and from samples of those Gaussians, up to sampling error
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal(mu1, s1, size=200_000)
    y = rng.multivariate_normal(mu2, s2, size=200_000)
    assert fid_from_features(x, y, method=method).value == pytest.approx(want, rel=0.01)


def test_fid_refuses_covariances_that_are_not_psd() -> None:
    mu = np.zeros(2)
    bad = np.diag([1.0, -1.0])  # sqrt(S1 S2) has an imaginary diagonal
    for method in ("eigh", "sqrtm"):
        with pytest.raises(Img2ImgError, match="FID"):
            fid(mu, np.eye(2), mu, bad, method=method)
    with pytest.raises(ValueError, match="shapes"):
        fid(np.zeros(3), np.eye(3), mu, np.eye(2))


def test_fid_reports_the_imaginary_residue_it_drops() -> None:
    a, b = _gauss(4, 30, 64), _gauss(5, 30, 64, shift=0.1)  # rank-deficient covariances
    r = fid_from_features(a, b, method="sqrtm")
    assert 0.0 <= r.max_imag < 1e-3 and math.isfinite(r.value)
    assert fid_from_features(a, b).value == pytest.approx(r.value, rel=1e-6)  # the Gram route agrees


# ---------------------------------------------------------------- KID


def test_kid_is_zero_within_its_std_for_one_distribution_and_positive_when_shifted() -> None:
    a, b = _gauss(10, 1000, 32), _gauss(11, 1000, 32)
    same = kid(a, b, subsets=50, subset_size=200, seed=1)
    assert abs(same.mean) <= 2 * same.std and same.std > 0
    shifted = kid(a, _gauss(12, 1000, 32, shift=0.5), subsets=50, subset_size=200, seed=1)
    assert shifted.mean > 10 * shifted.std and shifted.mean > 20 * abs(same.mean)


def test_kid_caps_the_subset_size_and_is_reproducible() -> None:
    a, b = _gauss(20, 30, 8), _gauss(21, 50, 8, shift=0.3)
    k1 = kid(a, b, subsets=5, subset_size=1000, seed=3)
    assert k1 == kid(a, b, subsets=5, subset_size=30, seed=3)  # capped at 30 = the smaller set
    assert k1 != kid(a, b, subsets=5, subset_size=30, seed=4)


def test_unbiased_mmd_drops_the_diagonal() -> None:
    x, y = _gauss(30, 5, 3), _gauss(31, 7, 3)
    k = lambda p, q: (p @ q.T / 3 + 1) ** 3  # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    want = (kxx.sum() - np.trace(kxx)) / 20 + (kyy.sum() - np.trace(kyy)) / 42 - 2 * k(x, y).mean()
    assert polynomial_mmd2(x, y) == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------- Inception Score


def test_inception_score_limits() -> None:
    same = np.tile(softmax(np.random.default_rng(0).normal(size=(1, 20))), (100, 1))
    assert inception_score(same, splits=10).mean == pytest.approx(1.0, abs=1e-12)
    for k in (2, 7, 10):
        one_hot = np.eye(k)[np.arange(10 * k) % k]  # every split holds each class equally often
        s = inception_score(one_hot, splits=10)
        assert s.mean == pytest.approx(k, rel=1e-12) and s.std == pytest.approx(0, abs=1e-9)
        assert inception_score(one_hot, splits=1).mean == pytest.approx(k, rel=1e-12)


def test_inception_score_rejects_logits_and_too_many_splits() -> None:
    with pytest.raises(ValueError, match="softmax"):
        inception_score(np.random.default_rng(0).normal(size=(20, 5)))
    with pytest.raises(Img2ImgError, match="splits"):
        inception_score(np.eye(4), splits=10)


# ---------------------------------------------------------------- precision / recall


def test_precision_recall_limits() -> None:
    f = _gauss(40, 200, 16)
    assert precision_recall(f, f.copy()) == (1.0, 1.0)
    assert precision_recall(f, f + 100.0) == (0.0, 0.0)
    # a fake set covering only half of the real one: precise, but recall about one half
    real = _gauss(41, 400, 2)
    fake = real[real[:, 0] > 0] + 1e-3
    p, r = precision_recall(real, fake)
    assert p > 0.95 and 0.4 < r < 0.65


def test_precision_recall_do_not_depend_on_the_batch_size() -> None:
    real, fake = _gauss(50, 123, 8), _gauss(51, 77, 8, shift=0.4)
    assert precision_recall(real, fake, batch_size=7) == precision_recall(real, fake, batch_size=1000)
    # k-th neighbour radius, self excluded, against the brute-force definition
    d = ((real[:, None] - real[None]) ** 2).sum(-1)
    np.testing.assert_allclose(knn_radii_sq(real, 3, batch_size=10), np.sort(d, axis=1)[:, 3], rtol=1e-9)


# ---------------------------------------------------------------- Parzen window


def test_parzen_matches_the_smoothed_gaussian_density() -> None:
    # The Parzen estimate of N(0, I) with width sigma tends to N(0, (1 + sigma^2) I) as samples grow.
    d, sigma = 2, 0.3
    train, test = _gauss(60, 20_000, d), _gauss(61, 500, d)
    ll = parzen_log_likelihood(train, test, sigma)
    v = 1 + sigma**2
    analytic = -0.5 * (test**2).sum(axis=1) / v - d / 2 * math.log(2 * math.pi * v)
    assert ll.shape == (500,)
    assert abs(ll.mean() - analytic.mean()) < 0.02 and np.abs(ll - analytic).mean() < 0.05


def test_parzen_batched_logsumexp_equals_the_direct_formula() -> None:
    train, test, sigma = _gauss(70, 1100, 5), _gauss(71, 600, 5), 0.7  # more rows than one batch
    d2 = ((test[:, None] - train[None]) ** 2).sum(-1)
    z = -d2 / (2 * sigma**2)
    m = z.max(axis=1, keepdims=True)
    want = (m[:, 0] + np.log(np.exp(z - m).sum(axis=1))) - math.log(1100) - 5 * math.log(sigma * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(parzen_log_likelihood(train, test, sigma), want, rtol=1e-10)


def test_parzen_sigma_selection_picks_the_validation_maximum() -> None:
    train, valid = _gauss(80, 2000, 1), _gauss(81, 2000, 1)
    grid = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    choice = parzen_select_sigma(train, valid, grid)
    assert choice.sigma == 0.3  # Silverman's rule of thumb gives 1.06 n^(-1/5) = 0.23
    assert choice.scores[0.3] == max(choice.scores.values())
    assert choice.scores[1.0] == pytest.approx(parzen_log_likelihood(train, valid, 1.0).mean(), rel=1e-12)


# ---------------------------------------------------------------- reference implementations


def _cross_check_features() -> tuple[np.ndarray, np.ndarray]:
    a = _gauss(90, 600, 64)
    b = _gauss(91, 500, 64, shift=0.05, scale=1.2) + 0.1 * _gauss(92, 500, 64) ** 2
    return a, b


def test_fid_agrees_with_pytorch_fid_torch_fidelity_and_torchmetrics() -> None:
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    tf_fid = pytest.importorskip("torch_fidelity.metric_fid")
    tm_fid = pytest.importorskip("torchmetrics.image.fid")
    import torch

    a, b = _cross_check_features()
    (m1, s1), (m2, s2) = feature_statistics(a), feature_statistics(b)
    ours = fid(m1, s1, m2, s2).value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pytorch-fid passes scipy's deprecated disp=
        ref = fid_score.calculate_frechet_distance(m1, s1, m2, s2)
    assert ours == pytest.approx(ref, rel=1e-4)
    assert fid(m1, s1, m2, s2, method="sqrtm").value == pytest.approx(ref, rel=1e-10)
    ref_tf = tf_fid.fid_statistics_to_metric({"mu": m1, "sigma": s1}, {"mu": m2, "sigma": s2}, False)
    assert ours == pytest.approx(ref_tf["frechet_inception_distance"], rel=1e-4)
    t = [torch.from_numpy(v) for v in (m1, s1, m2, s2)]
    assert ours == pytest.approx(float(tm_fid._compute_fid(*t)), rel=1e-4)


def test_kid_agrees_with_torch_fidelity_and_torchmetrics() -> None:
    tf_kid = pytest.importorskip("torch_fidelity.metric_kid")
    tm_kid = pytest.importorskip("torchmetrics.image.kid")
    import torch

    a, b = _cross_check_features()
    ours = kid(a, b, subsets=20, subset_size=200, seed=7)
    ref = tf_kid.kid_features_to_metric(
        torch.from_numpy(a), torch.from_numpy(b), kid_subsets=20, kid_subset_size=200, rng_seed=7, verbose=False,
        kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1,
    )  # fmt: skip
    assert ours.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4)
    assert ours.std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-4)
    x, y = torch.from_numpy(a[:300]), torch.from_numpy(b[:300])
    assert polynomial_mmd2(a[:300], b[:300]) == pytest.approx(float(tm_kid.poly_mmd(x, y)), rel=1e-4)


@pytest.mark.parametrize("seed", [None, 2020])
def test_inception_score_agrees_with_torch_fidelity(seed: int | None) -> None:
    tf_isc = pytest.importorskip("torch_fidelity.metric_isc")
    import torch

    logits = _gauss(95, 1000, 1008, scale=3.0)
    ours = inception_score(softmax(logits), splits=10, seed=seed)
    ref = tf_isc.isc_features_to_metric(
        torch.from_numpy(logits), splits=10, shuffle=seed is not None, rng_seed=seed or 0
    )
    assert ours.mean == pytest.approx(ref["inception_score_mean"], rel=1e-4)
    assert ours.std == pytest.approx(ref["inception_score_std"], rel=1e-4)


def test_precision_recall_agree_with_torch_fidelity() -> None:
    tf_prc = pytest.importorskip("torch_fidelity.metric_prc")
    import torch

    real, fake = _gauss(96, 400, 32), _gauss(97, 300, 32, shift=0.15, scale=0.9)
    ours = precision_recall(real, fake, k=3, batch_size=64)
    # torch-fidelity's convention: features_1 = generated, features_2 = real
    p, r = tf_prc.calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real), 3, 10000)
    assert 0.05 < ours.precision < 0.95 and 0.05 < ours.recall < 0.95  # not a trivial case
    assert ours.precision == pytest.approx(p, abs=1e-6) and ours.recall == pytest.approx(r, abs=1e-6)  # float32 means
