"""LightGBM integration: a lossgen loss as a custom objective and evaluation metric (feval).

    import lightgbm as lgb
    import lossgen.lightgbm as lgl

    params = {"objective": lgl.objective("focal", gamma=2.0), "metric": "None"}
    booster = lgb.train(params, train_set, num_boost_round=50, valid_sets=[valid_set],
                        feval=lgl.metric("focal", gamma=2.0))
    margins = booster.predict(X)        # raw scores: LightGBM applies no link to a custom objective

The objective computes each sample's gradient and Hessian diagonal with the loss's fused kernel
(reduction "none", float64), compiled once when the objective is made. LightGBM hands a custom
objective raw scores (margins) and starts them at 0 or at the Dataset's init_score (it does not
boost from the average for a custom objective), so the loss's prediction input must be on the
margin scale: a value for regression losses, a logit for `bce_with_logits` and `focal`, a row of
logits for `cross_entropy` (LightGBM 4 gives multi-class scores as (rows, classes); pass
num_class). LightGBM does not weight a custom objective's output, so Dataset weights multiply
the gradient and Hessian here. The Hessian floor (`hessian_floor=`, default "auto") is the one
described in `lossgen.xgboost`.

One object serves both of LightGBM's calling conventions: `lightgbm.train` calls
`objective(preds, dataset)` and the scikit-learn estimators call `objective(y_true, y_pred,
weight, group)` (they count the parameters of the callable, here four).

`import lossgen` never imports this module, and this module never imports lightgbm: it tells a
Dataset from an array by its get_label method.
"""

from __future__ import annotations

from .xgboost import DEFAULT_HESSIAN_FLOOR, _Metric, _Objective


class LightGBMObjective(_Objective):
    """A custom objective for LightGBM's params["objective"] and the estimators' objective=."""

    def __call__(self, preds, train_data, weight=None, group=None):
        """objective(preds, dataset) for lightgbm.train, or objective(y_true, y_pred, weight, group).

        Returns (grad, hess) in the shape of the scores: (rows,) or (rows, classes). `group`
        (learning to rank) is not used.
        """
        if hasattr(train_data, "get_label"):  # lightgbm.train: (scores, Dataset)
            return self.gradients(train_data.get_label(), preds, train_data.get_weight())
        return self.gradients(preds, train_data, weight)  # scikit-learn: (y_true, y_pred, weight, group)

    def __repr__(self):
        return f"<lossgen.lightgbm objective {self.name} params={self.params} hessian_floor={self.hessian_floor!r}>"


class LightGBMMetric(_Metric):
    """A custom metric for lightgbm.train(feval=...) and the estimators' eval_metric=."""

    def __call__(self, preds, eval_data, weight=None, group=None):
        """(name, mean loss, False): lower is better. Called as (preds, dataset) or (y_true, y_pred, weight, group)."""
        if hasattr(eval_data, "get_label"):
            return self.name, self.value(eval_data.get_label(), preds, eval_data.get_weight()), False
        return self.name, self.value(preds, eval_data, weight), False

    def __repr__(self):
        return f"<lossgen.lightgbm metric {self.name} params={self.params}>"


def objective(loss, *, hessian_floor=DEFAULT_HESSIAN_FLOOR, **params) -> LightGBMObjective:
    """A custom objective for LightGBM 4: `params["objective"]` of `lightgbm.train`, or `objective=` of
    LGBMRegressor/LGBMClassifier.

    `loss`: a Loss or a catalog name; `params` override the loss's parameters. Returns (grad, hess)
    per sample (per sample and class for row-wise losses such as `cross_entropy`), multiplied by the
    sample weights; see `lossgen.xgboost` for `hessian_floor`.
    """
    return LightGBMObjective(loss, params, hessian_floor)


def metric(loss, **params) -> LightGBMMetric:
    """A custom metric for `lightgbm.train(feval=...)` (and the estimators' `eval_metric=`).

    Returns `(loss name, mean loss, False)`: the weighted mean under Dataset weights, lower is
    better. It expects raw scores, which LightGBM passes with a custom objective; with a built-in
    objective LightGBM passes transformed predictions (probabilities) instead.
    """
    return LightGBMMetric(loss, params)


__all__ = ["objective", "metric", "LightGBMObjective", "LightGBMMetric"]
