"""XGBoost integration: a lossgen loss as a custom objective and evaluation metric.

    import xgboost as xgb
    import lossgen.xgboost as lgx

    booster = xgb.train({"base_score": 0.0, "disable_default_eval_metric": 1}, dtrain,
                        num_boost_round=50, obj=lgx.objective("focal", gamma=2.0),
                        custom_metric=lgx.metric("focal", gamma=2.0), evals=[(dvalid, "valid")])
    margins = booster.predict(dvalid, output_margin=True)

The objective computes each sample's gradient and Hessian diagonal with the loss's fused kernel
(reduction "none", float64), compiled once when the objective is made. XGBoost hands a custom
objective raw margins (before any link function), so the loss's prediction input must be on the
margin scale: a value for regression losses, a logit for `bce_with_logits` and `focal`, a row of
logits for `cross_entropy` (XGBoost >= 2 gives multi-class margins as (rows, classes); pass
num_class). Every margin starts at `base_score`, read as a margin for a custom objective (XGBoost
3.2 uses 0.5 when it is not given), or at the DMatrix's base_margin: pass base_score=0.0 to start
from 0. XGBoost does not weight a custom objective's output, so sample weights
(`DMatrix(weight=...)`) multiply the gradient and Hessian here. The kernel runs on one thread
inside the objective (see `_call_single_threaded`).

Hessian floor: a Newton step divides by the summed Hessian, so a Hessian that is zero or negative
(absolute_error, quantile and hinge are flat almost everywhere, huber beyond delta, focal bends the
wrong way in places) gives steps that are huge or go uphill. The floor acts only on a batch in
which some sample of positive weight has a Hessian value <= 0; then it warns once per objective,
naming the loss. Losses whose Hessian is positive there pass through untouched and train exactly
as written. `hessian_floor=`:
- "auto" (default): each Hessian value <= 0 is replaced by the batch's mean positive Hessian (per
  unit of sample weight, times the sample's weight), or by 1 when no value is positive. A flat loss
  such as absolute_error then takes Hessian 1, as XGBoost's and LightGBM's built-in L1 and quantile
  objectives do; a tiny constant would not do: with 1e-6, absolute_error boosting diverges in
  LightGBM (leaf values -G/H of order 1e6) and never splits in XGBoost (min_child_weight).
- a positive number f: every Hessian value below f (times the sample's weight) is raised to f.
- None: no floor.

`import lossgen` never imports this module, and this module never imports xgboost: it tells a
DMatrix from an array by its get_label method.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import InputError

DEFAULT_HESSIAN_FLOOR = "auto"


def _resolve(loss):
    """A Loss from a Loss or a catalog name."""
    from .catalog import get
    from .spec import Loss

    if isinstance(loss, str):
        return get(loss)
    if not isinstance(loss, Loss):
        raise InputError(f"loss must be a lossgen Loss or a catalog name, got {type(loss).__name__}")
    return loss


def _is_catalog_loss(loss) -> bool:
    """Whether `loss` is the catalog's own Loss object of its name."""
    from .catalog import get
    from .errors import SpecError

    try:
        return get(loss.name) is loss
    except SpecError:  # not a catalog name
        return False


def _optional(array):
    """None for a missing weight (XGBoost gives an empty array, LightGBM None)."""
    if array is None:
        return None
    array = np.asarray(array)
    return None if array.size == 0 else array


def _call_single_threaded(kernel, size, *arrays, **named):
    """kernel(*arrays, **named) with numba's threads limited to one, for this thread only.

    The booster's own OpenMP threads hold the cores during training. Waking numba's pool beside
    them left its threads spinning while the booster's next parallel loop started: on 2 cores
    XGBoost trained 100k rows about twice as slowly with the kernel's parallel path as with its
    serial one. The gradient pass is a small part of a round, so one thread costs little.
    Batches the kernel runs serially anyway (`size` below runtime.SERIAL_BELOW) are called
    directly: asking numba for its thread count would start its pool, and with numba's OpenMP
    layer that resets OpenMP's default thread count, which LightGBM's num_threads=0 follows.
    """
    from . import runtime

    if size < getattr(runtime, "SERIAL_BELOW", 0):
        return kernel(*arrays, **named)
    import numba  # loaded already: the kernel is a numba function

    before = numba.get_num_threads()
    if before == 1:
        return kernel(*arrays, **named)
    numba.set_num_threads(1)  # thread-local in numba: other threads keep their setting
    try:
        return kernel(*arrays, **named)
    finally:
        numba.set_num_threads(before)


class _LossAdapter:
    """The shared part of the XGBoost and LightGBM adapters: one loss, its params, one kernel.

    A boosting library knows two arrays per sample, a label and a prediction, so the loss must
    take exactly two inputs: the target and the `wrt` prediction.
    """

    def __init__(self, loss, params, reduction):
        self.loss = _resolve(loss)
        if len(self.loss.wrt) != 1 or len(self.loss.inputs) != 2:
            raise InputError(
                f"loss {self.loss.name!r} takes inputs {list(self.loss.inputs)} with wrt {list(self.loss.wrt)}; "
                "a boosting objective needs exactly two inputs, a target and one prediction (wrt)"
            )
        unknown = sorted(set(params) - set(self.loss.params))
        if unknown:
            raise InputError(
                f"unknown param {unknown[0]!r} for loss {self.loss.name!r}; params: {', '.join(self.loss.params) or 'none'}"
            )
        self.params = dict(params)
        self.name = self.loss.name
        (self._wrt,) = self.loss.wrt
        self._target = next(n for n in self.loss.inputs if n != self._wrt)
        self._rowwise = self.loss.rowwise
        self._labels_are_classes = self._rowwise and self.loss.roles[self._target] == "label"
        # Compiled once here, so the first boosting round pays no compile and a bad loss fails now.
        self.kernel = self.loss.compile(target="cpu", dtype="float64", reduction=reduction)

    def __deepcopy__(self, memo):
        # LightGBM deep-copies its params (the objective among them) and scikit-learn's clone()
        # deep-copies estimator params. A copy would only duplicate the compiled kernel, so this
        # object copies as itself, as a plain function does.
        return self

    def __reduce__(self):
        # Pickled as its recipe and rebuilt (the kernel comes back from the on-disk cache). A
        # catalog Loss travels as its name; any other Loss must pickle itself.
        loss, *rest = self._args
        if not isinstance(loss, str) and _is_catalog_loss(loss):
            loss = loss.name
        return type(self), (loss, *rest)

    def _evaluate(self, labels, margins, weight):
        """The kernel's Result for one batch given as a library hands it over."""
        # The kernel needs its prediction in float64 exactly; XGBoost and LightGBM hand over
        # float32 or float64 margins.
        margins = np.asarray(margins, dtype=np.float64)
        labels = np.asarray(labels)
        weight = _optional(weight)
        if self._rowwise:
            if margins.ndim != 2:
                raise InputError(
                    f"loss {self.name!r} is row-wise and needs margins of shape (rows, classes), got {margins.shape}; "
                    "train with num_class (XGBoost) or num_class and a multi-class objective (LightGBM) >= 2"
                )
            if self._labels_are_classes:
                labels = self._class_labels(labels)
        elif margins.ndim == 2 and labels.size == margins.size:
            # Several outputs per row (XGBoost multi-target): one label per output, one weight per row.
            labels = labels.reshape(margins.shape)
            if weight is not None and weight.shape == margins.shape[:1]:
                weight = np.repeat(np.asarray(weight, dtype=np.float64)[:, None], margins.shape[1], axis=1)
        return _call_single_threaded(self.kernel, margins.size, labels, margins, weight=weight, **self.params)

    def _class_labels(self, labels):
        # Both libraries store labels as floats; a class index must survive the trip exactly.
        classes = labels.astype(np.int64)
        if not np.array_equal(classes, labels):
            raise InputError(f"loss {self.name!r} takes integer class labels; got non-integer labels")
        return classes


class _Objective(_LossAdapter):
    """Gradient and Hessian diagonal of a loss, with the Hessian floor described in the module."""

    def __init__(self, loss, params, hessian_floor):
        super().__init__(loss, params, "none")
        self._args = (loss, dict(params), hessian_floor)
        if hessian_floor is not None and not (isinstance(hessian_floor, str) and hessian_floor == "auto"):
            if isinstance(hessian_floor, (bool, str)) or not isinstance(hessian_floor, (int, float, np.integer, np.floating)):
                raise InputError(f"hessian_floor must be 'auto', a positive number or None, got {hessian_floor!r}")
            hessian_floor = float(hessian_floor)
            if not (hessian_floor > 0 and np.isfinite(hessian_floor)):
                raise InputError(f"hessian_floor must be 'auto', a positive finite number or None, got {hessian_floor}")
        self.hessian_floor = hessian_floor
        self.floored = False  # set once the floor has acted: the warning is given once per objective

    def gradients(self, labels, margins, weight=None):
        """(grad, hess) float64 arrays in the shape of `margins`, weighted and floored."""
        result = self._evaluate(labels, margins, weight)
        grad, hess = result.grad, result.hess
        if self.hessian_floor is None or hess.size == 0:
            return grad, hess
        weight = _optional(weight)
        w = None
        if weight is None:
            trips = hess.min() <= 0  # one pass; a loss with a positive Hessian goes no further
        else:
            w = np.asarray(weight, dtype=np.float64)
            if hess.ndim == 2 and w.ndim == 1:
                w = w[:, None]  # one weight per row, applied to every class
            # A zero-weight sample has a zero Hessian by construction; only weighted ones count.
            trips = bool(np.any((hess <= 0) & (w > 0)))
        if trips:
            self._floor(hess, w)
        return grad, hess

    def _floor(self, hess, w):
        """Apply the floor in place; hess is already multiplied by the weights w (or w is None)."""
        if self.hessian_floor == "auto":
            flat = hess <= 0
            positive = hess > 0
            if positive.any():
                # The (weighted) mean curvature of the samples that have some.
                total = positive.sum() if w is None else np.broadcast_to(w, hess.shape)[positive].sum()
                curvature = float(hess[positive].sum() / total) if total > 0 else 1.0
            else:
                # Flat everywhere (absolute_error, quantile, hinge): Hessian 1 per unit weight,
                # the convention of XGBoost's and LightGBM's built-in L1 and quantile objectives.
                curvature = 1.0
            described = f"replacing them by {curvature:.3g} (the mean positive Hessian, or 1 when none is positive)"
            if w is None:
                hess[flat] = curvature
            else:
                np.copyto(hess, curvature * w, where=flat)
        else:
            described = f"raising every Hessian value below hessian_floor={self.hessian_floor:g} to it"
            np.maximum(hess, self.hessian_floor if w is None else self.hessian_floor * w, out=hess)
        if not self.floored:
            self.floored = True
            warnings.warn(
                f"lossgen: the Hessian of loss {self.name!r} is zero or negative at some samples, "
                f"which makes boosting steps infinite or uphill; {described}. "
                "Pass hessian_floor= (a number, 'auto' or None) to change this.",
                RuntimeWarning,
                stacklevel=4,
            )


class _Metric(_LossAdapter):
    """The loss's mean over samples (weighted mean under sample weights)."""

    def __init__(self, loss, params):
        # "weighted_mean" divides by the sum of weights when given, by the sample count otherwise.
        super().__init__(loss, params, "weighted_mean")
        self._args = (loss, dict(params))

    def value(self, labels, margins, weight=None) -> float:
        """The mean loss of one evaluation set."""
        return float(self._evaluate(labels, margins, weight).loss)


class XGBoostObjective(_Objective):
    """A custom objective for xgboost.train(obj=...) and the scikit-learn estimators (objective=...)."""

    def __call__(self, predt, dtrain, sample_weight=None):
        """obj(predt, dmatrix) for xgboost.train, or obj(y_true, y_pred, sample_weight=None) for sklearn.

        Returns (grad, hess) in the shape of the margins: (rows,) or (rows, classes).
        """
        if hasattr(dtrain, "get_label"):  # xgboost.train: (margins, DMatrix)
            return self.gradients(dtrain.get_label(), predt, dtrain.get_weight())
        # scikit-learn API: (y_true, y_pred[, sample_weight=]); XGBoost looks for the name
        # `sample_weight` in this signature to decide whether it may pass weights.
        return self.gradients(predt, dtrain, sample_weight)

    def __repr__(self):
        return f"<lossgen.xgboost objective {self.name} params={self.params} hessian_floor={self.hessian_floor}>"


class XGBoostMetric(_Metric):
    """A custom metric for xgboost.train(custom_metric=...) and the scikit-learn estimators' eval_metric."""

    def __init__(self, loss, params):
        super().__init__(loss, params)
        # XGBoost's scikit-learn wrapper names a callable metric by its __name__.
        self.__name__ = self.name

    def __call__(self, predt, dtrain, sample_weight=None):
        """(name, mean loss) for xgboost.train; the mean loss alone for the scikit-learn wrapper."""
        if hasattr(dtrain, "get_label"):
            return self.name, self.value(dtrain.get_label(), predt, dtrain.get_weight())
        return self.value(predt, dtrain, sample_weight)

    def __repr__(self):
        return f"<lossgen.xgboost metric {self.name} params={self.params}>"


def objective(loss, *, hessian_floor=DEFAULT_HESSIAN_FLOOR, **params) -> XGBoostObjective:
    """A custom objective for `xgboost.train(obj=...)`: `obj(margins, dmatrix) -> (grad, hess)`.

    `loss`: a Loss or a catalog name; `params` override the loss's parameters. Labels and sample
    weights come from the DMatrix; weights multiply grad and hess. Multi-class row-wise losses
    (`cross_entropy`) get (rows, classes) margins and return (rows, classes) arrays. See the module
    docstring for `hessian_floor`. The same object also works as a scikit-learn objective.
    """
    return XGBoostObjective(loss, params, hessian_floor)


def sklearn_objective(loss, *, hessian_floor=DEFAULT_HESSIAN_FLOOR, **params) -> XGBoostObjective:
    """A custom objective for `XGBRegressor`/`XGBClassifier(objective=...)`.

    Called `obj(y_true, y_pred, sample_weight=None)` by XGBoost's scikit-learn wrapper; returns
    (grad, hess). Note that XGBClassifier applies its own link (sigmoid, softmax) in
    `predict_proba`; use `predict(X, output_margin=True)` for the loss's own margins.
    """
    return XGBoostObjective(loss, params, hessian_floor)


def metric(loss, **params) -> XGBoostMetric:
    """A custom metric for `xgboost.train(custom_metric=...)`: `metric(margins, dmatrix) -> (name, value)`.

    The value is the loss's mean over the evaluation set (weighted mean under sample weights). It
    expects raw margins, which XGBoost passes when the objective is custom; with a built-in
    objective XGBoost passes transformed predictions (probabilities) instead. Called with
    `(y_true, y_pred, sample_weight=None)` (the scikit-learn wrapper's `eval_metric`), it returns
    the value alone.
    """
    return XGBoostMetric(loss, params)


__all__ = ["objective", "sklearn_objective", "metric", "XGBoostObjective", "XGBoostMetric", "DEFAULT_HESSIAN_FLOOR"]
