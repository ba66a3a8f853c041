"""The outlier scorer contract: one class per method, registered in selfsup.outliers.SCORERS.

A scorer trains a one-class model on the labeled images and scores every image of the
unlabeled pool; the pipeline keeps the images that score at least the threshold (the
"inliers" pool) and removes the rest as atypical.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class OutlierResult:
    scores: np.ndarray  # float64, one per pool image, higher = more typical
    threshold: float  # images with score < threshold are atypical (removed)
    history: pd.DataFrame  # per-epoch history (epoch, loss, radius, ...)


class OutlierScorer:
    """Subclass and set what differs."""

    # Options with their defaults; the defaults' types are enforced by the study check.
    OPTIONS: dict = {}

    def check(self, options: dict) -> None:
        """Cross-option rules; raise ValueError with a message starting with the option's
        key. Study validation calls it before any job runs."""

    def fit_score(
        self,
        encoder,
        train,
        train_eval,
        pool,
        options: dict,
        *,
        epochs: int,
        optimizer,
        samples_per_epoch: int,
        resume_dir=None,
        stream=sys.stderr,
    ) -> OutlierResult:
        """Train on the labeled images and score the pool.

        Args:
            encoder: the study's encoder (images -> features), trained in place.
            train: tf.data batches of the labeled images (x only), shuffled, maybe augmented.
            train_eval: the same images (x only), in order, not augmented.
            pool: the pool images to score (x only), in order.
            options: the scorer's OPTIONS, checked by `check`.
            epochs: the most epochs to train.
            optimizer: a keras optimizer (the model is compiled with it).
            samples_per_epoch: images per epoch, for the progress lines.
            resume_dir: where selfsup.training.fit keeps the state to resume from.
        """
        raise NotImplementedError
