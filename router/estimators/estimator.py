"""The fitted per-model estimator, applied with numpy: P(correct) and expected cost from a prompt.

An artifact is one ``.npz`` file (``numpy.load(allow_pickle=False)``: no pickle, nothing
executes when it loads) holding, per model, logistic-regression weights for P(correct) and
linear weights for the expected cost in USD over the features of :mod:`router.estimators.features`,
and a JSON ``meta`` entry (models, feature spec, how it was trained and its held-out figures).

Training needs scikit-learn (:mod:`router.lab.train`, the ``lab`` extra); applying the weights is
one sparse dot product per request, so the router's runtime path needs only numpy, does not pay
scikit-learn's import time, and cannot break when scikit-learn's pickle format changes.

Artifacts are loaded lazily (on the first request that needs one) and cached per resolved path,
reloaded when the file changes. ``digest`` (``sha256:`` + 16 hex digits of the file) goes into
every decision record that used the estimator.

Example:
    >>> est = load_estimator("policies/routed-routerbench.estimator.npz")
    >>> est.predict("Which gas do plants absorb? A. O2 B. CO2")["gpt-4-1106-preview"].p_correct
    0.97...
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from router.errors import RouterError
from router.estimators.features import FeatureSpec, featurize
from router.files import read_regular

FORMAT = "policy-router-estimator/1"
MICRO = 1e6  # cost weights are stored per micro-USD, where float16 keeps them precise


class EstimatorError(RouterError, ValueError):
    """An estimator artifact cannot be read or does not fit the policy (``path``: which file)."""

    def __init__(self, message: str, path: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class Prediction:
    """One model's estimate for one prompt."""

    p_correct: float
    cost_usd: float


class QualityEstimator:
    """Per-model P(correct) and expected cost; see the module doc."""

    def __init__(self, models: tuple[str, ...], spec: FeatureSpec, quality_w: np.ndarray, quality_b: np.ndarray,
                 cost_w: np.ndarray, cost_b: np.ndarray, meta: Mapping[str, Any], digest: str,
                 path: str = "<memory>") -> None:
        self.models, self.spec, self.meta, self.digest, self.path = models, spec, dict(meta), digest, path
        # Column-major stacks so one request reads only the columns its prompt touches.
        self._quality = np.ascontiguousarray(quality_w.T, dtype=np.float64)
        self._cost = np.ascontiguousarray(cost_w.T, dtype=np.float64)
        self._quality_b = quality_b.astype(np.float64)
        self._cost_b = cost_b.astype(np.float64)
        self._index = {m: i for i, m in enumerate(models)}

    def __contains__(self, model: object) -> bool:
        return model in self._index

    def __repr__(self) -> str:
        return f"QualityEstimator({self.path!r}, {len(self.models)} models, {self.digest})"

    def predict(self, text: str) -> dict[str, Prediction]:
        """Every model's estimate for ``text``."""
        index, value = featurize(text, self.spec)
        logits = value @ self._quality[index] + self._quality_b
        costs = value @ self._cost[index] + self._cost_b
        p = 1.0 / (1.0 + np.exp(-logits))
        return {m: Prediction(float(p[i]), max(float(costs[i]), 0.0)) for i, m in enumerate(self.models)}

    def predict_matrix(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """P(correct) and cost for many prompts: two arrays shaped (models, prompts)."""
        p = np.zeros((len(self.models), len(texts)))
        c = np.zeros_like(p)
        for j, text in enumerate(texts):
            index, value = featurize(text, self.spec)
            p[:, j] = value @ self._quality[index] + self._quality_b
            c[:, j] = value @ self._cost[index] + self._cost_b
        return 1.0 / (1.0 + np.exp(-p)), np.maximum(c, 0.0)

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the artifact; returns its digest."""
        meta = {**self.meta, "format": FORMAT, "models": list(self.models), "features": self.spec.to_dict()}
        with open(path, "wb") as handle:
            # float16 weights halve the file; the router applies exactly what was written (and
            # calibration scores with the artifact as read back), so nothing depends on the rounding.
            np.savez_compressed(handle, quality_w=self._quality.T.astype(np.float16),
                                quality_b=self._quality_b.astype(np.float32),
                                cost_w=(self._cost.T * MICRO).astype(np.float16),
                                cost_b=(self._cost_b * MICRO).astype(np.float32),
                                meta=np.array(json.dumps(meta, sort_keys=True)))
        return file_digest(path)


def file_digest(path: str | os.PathLike[str]) -> str:
    return _digest(read_regular(path))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


# What an artifact's ``meta.features`` may say: (lowest, highest) per integer field. The upper
# bounds are far above any trained grid but keep a hostile file from making each request slow.
_SPEC_BOUNDS = {"n_features": (1, 1 << 24), "word_ngrams": (1, 8), "char_ngrams": (0, 16),
                "max_chars": (1, 10_000_000)}
_ARRAY_SHAPES = {"quality_w": "weights", "cost_w": "weights", "quality_b": "bias", "cost_b": "bias"}


def read_estimator(path: str | os.PathLike[str]) -> QualityEstimator:
    """Read an artifact (no cache); :class:`EstimatorError` when it is missing or malformed
    (wrong types in ``meta``, non-numeric or non-finite weights, shapes that do not fit)."""
    where = os.fspath(path)
    try:
        data = read_regular(where)  # never blocks on a FIFO or device the policy names
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("quality_w", "quality_b", "cost_w", "cost_b", "meta")}
    except FileNotFoundError:
        raise EstimatorError("estimator file not found (run `router train`)", where) from None
    except (OSError, ValueError, KeyError) as err:
        raise EstimatorError(f"not an estimator artifact: {err}", where) from None
    meta_array = arrays["meta"]
    if meta_array.shape != () or meta_array.dtype.kind != "U":
        raise EstimatorError("bad meta entry: not a JSON string", where)
    try:
        meta = json.loads(str(meta_array))
    except ValueError as err:
        raise EstimatorError(f"bad meta entry: {err}", where) from None
    if not isinstance(meta, dict):
        raise EstimatorError("bad meta entry: not a JSON object", where)
    if meta.get("format") != FORMAT:
        raise EstimatorError(f"unknown format {str(meta.get('format'))[:40]!r}; expected {FORMAT}", where)
    models = _models(meta.get("models"), where)
    spec = _spec(meta.get("features"), where)
    shapes = {"weights": (len(models), spec.width), "bias": (len(models),)}
    for key, kind in _ARRAY_SHAPES.items():
        array = arrays[key]
        if array.dtype.kind not in "fiu":
            raise EstimatorError(f"{key} holds {array.dtype} values, expected numbers", where)
        if array.shape != shapes[kind]:
            raise EstimatorError(f"{key} has shape {array.shape}, expected {shapes[kind]}", where)
        if not np.isfinite(array).all():
            raise EstimatorError(f"{key} holds values that are not finite (NaN or infinity)", where)
    return QualityEstimator(models, spec, arrays["quality_w"], arrays["quality_b"],
                            arrays["cost_w"].astype(np.float64) / MICRO, arrays["cost_b"].astype(np.float64) / MICRO,
                            meta, _digest(data), where)


def _models(raw: Any, where: str) -> tuple[str, ...]:
    """``meta.models``: a non-empty list of distinct, non-empty names."""
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) and m for m in raw):
        raise EstimatorError("bad meta entry: models must be a non-empty list of model names", where)
    if len(set(raw)) != len(raw):
        raise EstimatorError("bad meta entry: a model is named twice in models", where)
    return tuple(raw)


def _spec(raw: Any, where: str) -> FeatureSpec:
    """``meta.features`` as a :class:`FeatureSpec`: known keys, integers (not booleans) within
    :data:`_SPEC_BOUNDS`, ``tail`` a boolean."""
    if not isinstance(raw, dict):
        raise EstimatorError("bad meta entry: features must be a mapping", where)
    unknown = sorted(set(raw) - {*_SPEC_BOUNDS, "tail"})
    if unknown:
        raise EstimatorError(f"bad meta entry: unknown feature keys {unknown[:5]}", where)
    for key, (low, high) in _SPEC_BOUNDS.items():
        value = raw.get(key, getattr(FeatureSpec, key))
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise EstimatorError(f"bad meta entry: features.{key} must be an integer from {low} to {high}, "
                                 f"not {repr(value)[:40]}", where)
    if not isinstance(raw.get("tail", False), bool):
        raise EstimatorError("bad meta entry: features.tail must be true or false", where)
    return FeatureSpec(**raw)


_CACHE: dict[str, tuple[tuple[int, int], QualityEstimator]] = {}
_LOCK = threading.Lock()


def load_estimator(path: str | os.PathLike[str]) -> QualityEstimator:
    """The artifact at ``path``, read once per process (again when the file changes)."""
    resolved = os.path.abspath(os.fspath(path))
    try:
        stat = os.stat(resolved)
    except OSError:
        raise EstimatorError("estimator file not found (run `router train`)", resolved) from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _LOCK:
        hit = _CACHE.get(resolved)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    estimator = read_estimator(resolved)
    with _LOCK:
        _CACHE[resolved] = (stamp, estimator)
    return estimator


__all__ = ["FORMAT", "EstimatorError", "Prediction", "QualityEstimator", "file_digest", "load_estimator",
           "read_estimator"]
