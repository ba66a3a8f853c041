"""selfsup.pretext.losses against hand-written NumPy references, and their stop-gradients."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from selfsup.pretext import losses

N, D = 8, 16
TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture
def rand():
    """Independent (N, D) float32 Gaussian arrays from a fixed seed, as many as asked for."""
    rng = np.random.default_rng(0)
    return lambda count=2, n=N, d=D: [rng.normal(size=(n, d)).astype(np.float32) for _ in range(count)]


# --- NumPy references, written from the papers, not from the TF code ---------------------------


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def log_softmax_at(row, label):
    """-log softmax(row)[label], computed stably."""
    m = row.max()
    return -(row[label] - m - np.log(np.sum(np.exp(row - m))))


def ref_nt_xent(z1, z2, t):
    z = unit(np.concatenate([z1, z2]).astype(np.float64))
    n2, n = len(z), len(z1)
    total = 0.0
    for i in range(n2):
        positive = (i + n) % n2
        others = [j for j in range(n2) if j != i]
        logits = np.array([z[i] @ z[j] / t for j in others])
        total += log_softmax_at(logits, others.index(positive))
    return total / n2


def ref_info_nce(queries, keys, t):
    """Mean over i of -log softmax_j(q_i . k_j / t)[i], on unit vectors."""
    q, k = unit(queries.astype(np.float64)), unit(keys.astype(np.float64))
    return np.mean([log_softmax_at(q[i] @ k.T / t, i) for i in range(len(q))])


def ref_nearest(z, queue):
    z, queue = unit(z.astype(np.float64)), unit(queue.astype(np.float64))
    return np.stack([queue[np.argmax([row @ s for s in queue])] for row in z])


def ref_nnclr(z1, z2, queue, t):
    return (ref_info_nce(ref_nearest(z1, queue), z2, t) + ref_info_nce(ref_nearest(z2, queue), z1, t)) / 2


def ref_moco(query, key, queue, t):
    """Mean over i of -log softmax([q_i . k_i, q_i . queue_1, ..., q_i . queue_K] / t)[0]."""
    q, k, neg = (unit(x.astype(np.float64)) for x in (query, key, queue))
    return np.mean(
        [log_softmax_at(np.concatenate([[q[i] @ k[i]], neg @ q[i]]) / t, 0) for i in range(len(q))]
    )


def ref_negative_cosine(p, z):
    return -np.mean([a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(p, z, strict=True)])


def ref_barlow(z1, z2, lam, eps=1e-5):
    z1, z2 = z1.astype(np.float64), z2.astype(np.float64)
    n, d = z1.shape
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + eps)  # numpy var is the biased one
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + eps)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = np.sum(a[:, i] * b[:, j]) / n
            loss += (1 - c) ** 2 if i == j else lam * c**2
    return loss


def ref_byol(p1, p2, t1, t2):
    def per_sample(p, t):
        return np.sum((unit(p) - unit(t)) ** 2, axis=1)

    return np.mean(per_sample(p1, t2) + per_sample(p2, t1))


def ref_vicreg(z1, z2, ws, wv, wc):
    z1, z2 = z1.astype(np.float64), z2.astype(np.float64)
    n, d = z1.shape
    invariance = np.mean((z1 - z2) ** 2)

    def variance(z):
        return np.mean(np.maximum(0.0, 1 - np.sqrt(z.var(0, ddof=1) + 1e-4)))

    def covariance(z):
        cov = np.cov(z, rowvar=False)  # (N - 1)-normalized
        return sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d

    return (
        ws * invariance + wv * (variance(z1) / 2 + variance(z2) / 2) + wc * (covariance(z1) + covariance(z2))
    )


def ref_embedding_std(z):
    return np.mean(np.std(unit(z.astype(np.float64)), axis=0, ddof=1))


# --- against the references ---------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_matches_reference(rand, temperature):
    z1, z2 = rand()
    got = losses.nt_xent(z1, z2, temperature)
    assert got.dtype == tf.float32 and got.shape == ()
    np.testing.assert_allclose(got.numpy(), ref_nt_xent(z1, z2, temperature), **TOL)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nnclr_matches_reference(rand, temperature):
    z1, z2, queue = rand(3)
    queue = np.concatenate([queue, rand(1, n=24)[0]])  # a support set of 32 rows
    np.testing.assert_allclose(losses.nearest_neighbours(z1, queue).numpy(), ref_nearest(z1, queue), **TOL)
    got = losses.nnclr(z1, z2, queue, temperature)
    assert got.dtype == tf.float32 and got.shape == ()
    np.testing.assert_allclose(got.numpy(), ref_nnclr(z1, z2, queue, temperature), **TOL)


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_moco_matches_reference(rand, temperature):
    query, key = rand(2)
    (queue,) = rand(1, n=24)
    got = losses.moco(query, key, queue, temperature)
    np.testing.assert_allclose(got.numpy(), ref_moco(query, key, queue, temperature), **TOL)


def test_moco_by_hand():
    # One query, its key at 60 degrees and one negative at 90: logits cos/t = [0.5, 0] / 0.5.
    query, key, queue = [[1.0, 0.0]], [[0.5, 3**0.5 / 2]], [[0.0, 2.0]]
    expected = -np.log(np.exp(1.0) / (np.exp(1.0) + np.exp(0.0)))
    assert float(losses.moco(query, key, queue, 0.5)) == pytest.approx(expected, rel=1e-6)


def test_moco_does_not_differentiate_keys_or_queue(rand):
    query, key = (tf.Variable(x) for x in rand(2))
    queue = tf.Variable(rand(1, n=24)[0])
    with tf.GradientTape() as tape:
        value = losses.moco(query, key, queue, 0.2)
    grad_q, grad_k, grad_queue = tape.gradient(value, [query, key, queue])
    assert grad_k is None and grad_queue is None
    assert float(tf.reduce_sum(tf.abs(grad_q))) > 0


def test_negative_cosine_and_simsiam_match_reference(rand):
    p1, p2, z1, z2 = rand(4)
    np.testing.assert_allclose(losses.negative_cosine(p1, z2).numpy(), ref_negative_cosine(p1, z2), **TOL)
    expected = ref_negative_cosine(p1, z2) / 2 + ref_negative_cosine(p2, z1) / 2
    np.testing.assert_allclose(losses.simsiam(p1, p2, z1, z2).numpy(), expected, **TOL)


@pytest.mark.parametrize("lam", [0.0, 5e-3, 1.0])
def test_barlow_twins_matches_reference(rand, lam):
    z1, z2 = rand()
    np.testing.assert_allclose(losses.barlow_twins(z1, z2, lam).numpy(), ref_barlow(z1, z2, lam), **TOL)


def test_byol_matches_reference(rand):
    p1, p2, t1, t2 = rand(4)
    got = losses.byol(p1, p2, t1, t2)
    np.testing.assert_allclose(got.numpy(), ref_byol(p1, p2, t1, t2), **TOL)
    # The sum of two normalized MSEs per sample, each in [0, 4].
    assert 0.0 <= got.numpy() <= 8.0


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)])
def test_vicreg_matches_reference(rand, weights):
    z1, z2 = rand()
    z2 = 0.3 * z2  # std below 1 in the second branch, so the hinge is active there
    got = losses.vicreg(z1, z2, *weights)
    assert got.shape == ()
    np.testing.assert_allclose(got.numpy(), ref_vicreg(z1, z2, *weights), **TOL)


def test_embedding_std_matches_reference(rand):
    (z,) = rand(1)
    np.testing.assert_allclose(losses.embedding_std(z).numpy(), ref_embedding_std(z), **TOL)


# --- properties -----------------------------------------------------------------------------------


def test_nt_xent_lower_for_identical_separated_views(rand):
    # Identical views of N one-hot (mutually orthogonal) embeddings: each positive is the best match.
    separated = np.eye(N, D, dtype=np.float32)
    z1, z2 = rand()
    assert losses.nt_xent(separated, separated, 0.1) < losses.nt_xent(z1, z2, 0.1)
    # Positive logit 1/t against 2N - 2 negatives at 0.
    np.testing.assert_allclose(
        losses.nt_xent(separated, separated, 0.1).numpy(),
        -np.log(np.exp(10) / (np.exp(10) + 2 * N - 2)),
        **TOL,
    )


def test_barlow_twins_near_zero_for_equal_decorrelated_views():
    # Columns 1..7 of an 8x8 Hadamard matrix: zero mean, unit (biased) variance, orthogonal.
    h = np.array([[1.0]])
    for _ in range(3):
        h = np.block([[h, h], [h, -h]])
    z = h[:, 1:].astype(np.float32)
    got = losses.barlow_twins(z, z, 5e-3).numpy()
    # C = I / (1 + eps): only the eps of the standardization is left, 7 * (eps / (1 + eps))^2.
    assert got < 1e-8
    np.testing.assert_allclose(got, ref_barlow(z, z, 5e-3), atol=1e-9)


def test_barlow_twins_positive_for_equal_correlated_views(rand):
    (z,) = rand(1)
    # Equal views make the diagonal ~1, but random dims over 8 samples are correlated.
    assert losses.barlow_twins(z, z, 1.0).numpy() > 0.1


def test_simsiam_and_byol_do_not_differentiate_the_targets(rand):
    p1, p2, z1, z2 = (tf.Variable(x) for x in rand(4))
    for loss in (losses.simsiam, losses.byol):
        with tf.GradientTape(persistent=True) as tape:
            value = loss(p1, p2, z1, z2)
        for target in (z1, z2):
            grad = tape.gradient(value, target)
            assert grad is None or np.all(grad.numpy() == 0)
        # ...while the predictions do get a gradient.
        assert np.any(tape.gradient(value, p1).numpy() != 0)
        del tape


def test_nnclr_does_not_differentiate_the_neighbours(rand):
    z1, z2, queue = (tf.Variable(x) for x in rand(3))
    with tf.GradientTape(persistent=True) as tape:
        value = losses.nnclr(z1, z2, queue, 0.1)
    grad = tape.gradient(value, queue)
    assert grad is None or np.all(grad.numpy() == 0)
    # z1 still gets a gradient, as the key of the nn(z2) queries.
    assert np.any(tape.gradient(value, z1).numpy() != 0)


def test_nnclr_with_own_batch_as_queue_is_cross_view_info_nce(rand):
    z1, z2 = rand()
    # With exactly z1 as the support set, each z1 row is its own nearest neighbour.
    np.testing.assert_allclose(losses.nearest_neighbours(z1, z1).numpy(), unit(z1), **TOL)
    with_z1 = (ref_info_nce(z1, z2, 0.2) + ref_info_nce(ref_nearest(z2, z1), z1, 0.2)) / 2
    np.testing.assert_allclose(losses.nnclr(z1, z2, z1, 0.2).numpy(), with_z1, **TOL)
    # With both views as the support set, NNCLR is the symmetric cross-view InfoNCE.
    both = np.concatenate([z1, z2])
    expected = (ref_info_nce(z1, z2, 0.2) + ref_info_nce(z2, z1, 0.2)) / 2
    np.testing.assert_allclose(losses.nnclr(z1, z2, both, 0.2).numpy(), expected, **TOL)


def test_embedding_std_zero_for_collapse_and_spread_for_gaussian():
    rng = np.random.default_rng(1)
    row = rng.normal(size=(1, D)).astype(np.float32)
    np.testing.assert_allclose(losses.embedding_std(np.repeat(row, N, axis=0)).numpy(), 0.0, atol=1e-6)
    z = rng.normal(size=(4096, D)).astype(np.float32)
    np.testing.assert_allclose(losses.embedding_std(z).numpy(), 1 / np.sqrt(D), rtol=0.05)
