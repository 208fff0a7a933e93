"""Learned per-prompt estimates for routing: features, the fitted estimator, and applying a
policy's ``routing:`` block to a plan.

Example:
    >>> from router.estimators import load_estimator
    >>> load_estimator("policies/routed-routerbench.estimator.npz").models[:2]
"""

from router.estimators.estimator import EstimatorError, Prediction, QualityEstimator, load_estimator, read_estimator
from router.estimators.features import FeatureSpec, featurize

__all__ = ["EstimatorError", "FeatureSpec", "Prediction", "QualityEstimator", "featurize", "load_estimator",
           "read_estimator"]
