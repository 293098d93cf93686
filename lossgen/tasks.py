"""Tasks: which problems each catalog loss fits, with one line on why, for `lossgen list --task`.

The tags are editorial (what a loss is used for); the properties that `--convex`, `--robust`
and `--smooth` filter on are proved by lossgen.properties, never written here.
"""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("regression", "binary", "multiclass", "quantile", "count", "segmentation")


@dataclass(frozen=True)
class TaskFit:
    """A loss fits `task` because of `why` (one line)."""

    task: str
    why: str


def _fits(**whys: str) -> tuple[TaskFit, ...]:
    return tuple(TaskFit(task, why) for task, why in whys.items())


# Catalog losses by name. A catalog loss missing here fits no task (penalties such as l1 are
# not losses of a prediction against a target); names not in the catalog are ignored.
CATALOG_TASKS: dict[str, tuple[TaskFit, ...]] = {
    "squared_error": _fits(regression="predicts the conditional mean; the default for Gaussian noise, constant Hessian"),
    "rmse": _fits(regression="the square root of the mean squared error, in the target's units"),
    "absolute_error": _fits(
        regression="predicts the conditional median; one outlier moves the fit by a bounded amount",
        quantile="the 0.5 quantile (median) as a pinball loss with tau = 0.5",
    ),
    "huber": _fits(regression="squared error near the fit, absolute beyond delta: robust to outliers yet smooth at 0"),
    "smooth_l1": _fits(regression="Huber divided by beta: box regression and other targets with outliers"),
    "pseudo_huber": _fits(regression="a Huber with every derivative: robust to outliers with a positive Hessian for Newton steps"),
    "log_cosh": _fits(regression="quadratic near the fit and linear far out, smooth everywhere: robust regression for boosting"),
    "quantile": _fits(
        quantile="the pinball loss: its minimizer is the tau-quantile; prediction intervals",
        regression="median regression at tau = 0.5, asymmetric costs at other tau",
    ),
    "epsilon_insensitive": _fits(regression="errors below epsilon are free: support vector regression, sparse in the samples"),
    "mape": _fits(regression="relative error, comparable across targets of different scales (y > 0)"),
    "msle": _fits(regression="squared error of log(1 + y): targets spanning orders of magnitude"),
    "poisson": _fits(
        count="Poisson negative log-likelihood with a log link: counts and rates",
        regression="non-negative targets whose variance grows like their mean",
    ),
    "gamma": _fits(regression="Gamma deviance with a log link: positive, right-skewed targets (claim sizes, durations)"),
    "tweedie": _fits(
        regression="compound Poisson-Gamma: non-negative amounts with exact zeros (insurance losses)",
        count="zero-inflated counts and amounts with 1 < power < 2",
    ),
    "bce": _fits(binary="cross-entropy on a probability: calibrated probabilities for two classes"),
    "bce_with_logits": _fits(binary="cross-entropy on a logit, stable for any score: the default for two classes"),
    "weighted_bce_with_logits": _fits(binary="cross-entropy on a logit with positives weighted: imbalanced classes"),
    "focal": _fits(
        binary="down-weights easy examples: heavy class imbalance, dense object detection",
        segmentation="per-pixel focal loss for sparse foreground masks",
    ),
    "hinge": _fits(binary="maximum-margin classification (linear SVM) on scores with labels in {-1, 1}"),
    "squared_hinge": _fits(binary="margin classification with a continuous gradient (LinearSVC's default)"),
    "logistic": _fits(binary="logistic regression on scores with labels in {-1, 1}: calibrated probabilities"),
    "exponential": _fits(binary="AdaBoost's loss on scores with labels in {-1, 1}: focuses on misclassified samples"),
    # Row-wise losses (over a class axis), when the catalog has them.
    "cross_entropy": _fits(multiclass="softmax cross-entropy on logits with integer labels: the default for many classes"),
    "soft_cross_entropy": _fits(multiclass="softmax cross-entropy with probability targets: soft labels, distillation, mixup"),
    "categorical_cross_entropy": _fits(multiclass="cross-entropy on normalized probabilities (a softmax output) with targets"),
    "kl_div": _fits(multiclass="KL divergence to target distributions on log-probabilities: distillation"),
    "multiclass_focal": _fits(multiclass="focal loss over softmax logits: many classes with heavy imbalance"),
    "multiclass_hinge": _fits(multiclass="Crammer-Singer margin over all classes (multi-class SVM)"),
    "dice": _fits(segmentation="overlap of predicted and true masks per row: robust to class imbalance in segmentation"),
    "tversky": _fits(segmentation="Dice with separate weights for false positives and false negatives"),
    "dice_bce": _fits(segmentation="Dice plus per-pixel cross-entropy: stabler early training than Dice alone"),
}


def fits(name: str, task: str) -> TaskFit | None:
    """Why catalog loss `name` fits `task`, or None when it does not."""
    return next((fit for fit in CATALOG_TASKS.get(name, ()) if fit.task == task), None)


def tasks_of(name: str) -> tuple[str, ...]:
    """The tasks a catalog loss fits, in the order of TASKS."""
    tagged = {fit.task for fit in CATALOG_TASKS.get(name, ())}
    return tuple(t for t in TASKS if t in tagged)
