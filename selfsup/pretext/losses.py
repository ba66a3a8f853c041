"""Losses of joint-embedding self-supervised methods, as pure functions of TensorFlow tensors.

They live together because they share one shape of problem and one set of conventions:
each compares the embeddings (N, D) of two augmented views of the same N images and
returns a scalar, and they differ only in how they keep the embeddings from collapsing
(negatives, a support queue, a stop-gradient with a predictor, or statistics of the
batch). Keeping them side by side, free of models and training loops, makes them easy
to test against NumPy references and to compare line by line; the method modules build
their models around them. Inputs are cast to float32; every loss returns a float32 scalar.

Conventions (where the papers or their code leave a choice):
- L2 normalization is `tf.math.l2_normalize` (x / sqrt(max(sum x^2, 1e-12))).
- Stop-gradients sit where the papers put them: on the targets of SimSiam and BYOL, on
  the nearest neighbours of NNCLR and on MoCo's keys and queue.
- Barlow Twins standardizes each dimension as the authors' BatchNorm1d(affine=False)
  does: (z - mean) / sqrt(biased variance + 1e-5).
- VICReg uses the unbiased (N - 1) variance and covariance, with 1e-4 inside the square
  root of the variance, as its reference code.
- `embedding_std` uses the unbiased (N - 1) std, as solo-learn and lightly (torch.std).
"""

from __future__ import annotations

import tensorflow as tf

_NORM_EPS = 1e-12  # on the squared norm, as tf.math.l2_normalize
_BARLOW_EPS = 1e-5  # BatchNorm1d's default eps
_VICREG_EPS = 1e-4  # inside sqrt(var + eps), as the VICReg paper


def _float(x) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def _normalize(x) -> tf.Tensor:
    return tf.math.l2_normalize(_float(x), axis=-1, epsilon=_NORM_EPS)


def _cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean softmax cross-entropy of rows of logits against integer labels."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def _off_diagonal(matrix: tf.Tensor) -> tf.Tensor:
    """The matrix with its diagonal set to zero."""
    return tf.linalg.set_diag(matrix, tf.zeros_like(tf.linalg.diag_part(matrix)))


def nt_xent(z1, z2, temperature) -> tf.Tensor:
    """SimCLR's NT-Xent: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020."""
    z = _normalize(tf.concat([_float(z1), _float(z2)], axis=0))  # (2N, D)
    n = tf.shape(z1)[0]
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    # A view is not its own negative: its self-similarity drops out of the softmax.
    logits = tf.linalg.set_diag(logits, tf.fill([2 * n], tf.constant(-1e9, tf.float32)))
    # The positive of view i is the other view of the same image: i + N, or i - N.
    labels = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], axis=0)
    return _cross_entropy(logits, labels)


def nearest_neighbours(z, queue) -> tf.Tensor:
    """The normalized `queue` row (Q, D) nearest in cosine to each row of `z` (N, D), with no gradient."""
    z, queue = _normalize(z), _normalize(queue)
    index = tf.argmax(tf.matmul(z, queue, transpose_b=True), axis=1)
    return tf.stop_gradient(tf.gather(queue, index))


def nnclr(z1, z2, queue, temperature, p1=None, p2=None) -> tf.Tensor:
    """NNCLR: Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual Representations", ICCV 2021."""

    def one_way(query, keys):
        # The support set's nearest neighbour of each query is contrasted with the other view.
        logits = tf.matmul(nearest_neighbours(query, queue), _normalize(keys), transpose_b=True)
        return _cross_entropy(logits / temperature, tf.range(tf.shape(keys)[0]))

    # With a predictor the neighbour of z1 is contrasted with the prediction p2 of view 2
    # (and symmetrically), as in the paper; without one, with the other projection.
    return (one_way(z1, z2 if p2 is None else p2) + one_way(z2, z1 if p1 is None else p1)) / 2


def moco(query, key, queue, temperature) -> tf.Tensor:
    """MoCo's InfoNCE: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.

    Each query (N, D) is classified among its own key (the positive) and the queue's K
    rows (the negatives) by softmax of cosine / temperature, as facebookresearch/moco
    moco/builder.py (`logits = cat([l_pos, l_neg]) / T`, label 0) and solo-learn
    solo/losses/mocov2plus.py. The keys and queue come from the momentum network: no
    gradient flows into them."""
    q = _normalize(query)
    k = tf.stop_gradient(_normalize(key))
    negatives = tf.stop_gradient(_normalize(queue))
    positive = tf.reduce_sum(q * k, axis=-1, keepdims=True)  # (N, 1)
    negative = tf.matmul(q, negatives, transpose_b=True)  # (N, K)
    logits = tf.concat([positive, negative], axis=1) / temperature
    return _cross_entropy(logits, tf.zeros(tf.shape(q)[:1], tf.int32))


def negative_cosine(p, z) -> tf.Tensor:
    """SimSiam's D(p, z): Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021."""
    cosine = tf.reduce_sum(_normalize(p) * tf.stop_gradient(_normalize(z)), axis=-1)
    return -tf.reduce_mean(cosine)


def simsiam(p1, p2, z1, z2) -> tf.Tensor:
    """SimSiam's symmetrized D(p1, z2)/2 + D(p2, z1)/2: Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021."""
    return negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2


def barlow_twins(z1, z2, lambda_offdiag) -> tf.Tensor:
    """Barlow Twins: Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021."""

    def standardize(z):
        # BatchNorm1d(affine=False) in training mode: biased variance, eps 1e-5.
        mean, variance = tf.nn.moments(z, axes=[0])
        return (z - mean) / tf.sqrt(variance + _BARLOW_EPS)

    z1, z2 = _float(z1), _float(z2)
    n = tf.cast(tf.shape(z1)[0], tf.float32)
    c = tf.matmul(standardize(z1), standardize(z2), transpose_a=True) / n  # (D, D)
    on_diagonal = tf.reduce_sum(tf.square(1.0 - tf.linalg.diag_part(c)))
    off_diagonal = tf.reduce_sum(tf.square(_off_diagonal(c)))
    return on_diagonal + lambda_offdiag * off_diagonal


def byol(p1, p2, t1, t2) -> tf.Tensor:
    """BYOL, batch mean of the per-sample sum of both directions: Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020."""

    def normalized_mse(p, t):
        # ||p/|p| - t/|t| ||^2 = 2 - 2 cos(p, t), per sample, the target held fixed.
        return 2.0 - 2.0 * tf.reduce_sum(_normalize(p) * tf.stop_gradient(_normalize(t)), axis=-1)

    return tf.reduce_mean(normalized_mse(p1, t2) + normalized_mse(p2, t1))


def vicreg(z1, z2, sim_weight, var_weight, cov_weight) -> tf.Tensor:
    """VICReg: Bardes et al., "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning", ICLR 2022."""
    z1, z2 = _float(z1), _float(z2)
    n = tf.cast(tf.shape(z1)[0], tf.float32)
    d = tf.cast(tf.shape(z1)[1], tf.float32)

    invariance = tf.reduce_mean(tf.square(z1 - z2))

    def centered(z):
        return z - tf.reduce_mean(z, axis=0)

    def variance(z):
        std = tf.sqrt(tf.reduce_sum(tf.square(centered(z)), axis=0) / (n - 1) + _VICREG_EPS)
        return tf.reduce_mean(tf.nn.relu(1.0 - std))

    def covariance(z):
        z = centered(z)
        cov = tf.matmul(z, z, transpose_a=True) / (n - 1)
        return tf.reduce_sum(tf.square(_off_diagonal(cov))) / d

    variance_term = variance(z1) / 2 + variance(z2) / 2
    covariance_term = covariance(z1) + covariance(z2)
    return sim_weight * invariance + var_weight * variance_term + cov_weight * covariance_term


def embedding_std(z) -> tf.Tensor:
    """Collapse monitor, as solo-learn and lightly log it, after Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021."""
    z = _normalize(z)
    n = tf.cast(tf.shape(z)[0], tf.float32)
    centered = z - tf.reduce_mean(z, axis=0)
    std = tf.sqrt(tf.reduce_sum(tf.square(centered), axis=0) / (n - 1))
    return tf.reduce_mean(std)
