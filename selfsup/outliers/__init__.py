"""Registry of outlier scorers: one class per method (selfsup.outliers.base.OutlierScorer),
keyed by its config name. Adding a scorer is one module, one line here and its tests."""

from selfsup.outliers.base import OutlierResult, OutlierScorer
from selfsup.outliers.one_class_network import OneClassNetwork

SCORERS: dict[str, OutlierScorer] = {
    "one_class_network": OneClassNetwork(),
}

__all__ = ["SCORERS", "OutlierResult", "OutlierScorer", "get_scorer"]


def get_scorer(name: str) -> OutlierScorer:
    try:
        return SCORERS[name]
    except KeyError:
        raise KeyError(
            f"unknown outlier method {name!r}; choose one of {', '.join(sorted(SCORERS))}"
        ) from None
