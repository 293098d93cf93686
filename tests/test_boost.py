"""Boosting integrations: lossgen losses as XGBoost and LightGBM objectives and metrics.

Parity tests train the same trees with a built-in objective and with lossgen's, and compare raw
margins. They pin everything that would make the two runs differ for reasons other than the
gradients: the starting margin (XGBoost base_score, LightGBM boost_from_average) and, where the
built-in objective scales its Hessian, the parameters that make that scaling cancel.
"""

import copy
import math
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import lossgen as lg

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(11)
N, D = 1500, 8
X = RNG.normal(size=(N, D))
Y_REG = X[:, 0] + np.sin(2 * X[:, 1]) + 0.3 * RNG.normal(size=N)
Y_BIN = (X[:, 0] - X[:, 2] + 0.5 * RNG.normal(size=N) > 0).astype(np.float64)
Y_MULTI = np.digitize(X[:, 0] + 0.5 * X[:, 1] + 0.3 * RNG.normal(size=N), [-0.7, 0.0, 0.7]).astype(np.float64)
WEIGHT = RNG.uniform(0.2, 3.0, size=N)
X_TEST = RNG.normal(size=(N, D))
Y_TEST_BIN = (X_TEST[:, 0] - X_TEST[:, 2] + 0.5 * RNG.normal(size=N) > 0).astype(np.float64)
ROUNDS = 10
# One thread everywhere: the results do not depend on it, and on a busy machine OpenMP's
# spinning threads can make a tiny training run take seconds.
# Margins agree to float32 rounding (both libraries keep gradients in float32). Parity is checked
# on the training rows: when a node's best threshold lies in a gap that holds no training row,
# rounding noise may pick another threshold in the same gap. The trees then split the training
# data identically and only unseen rows between the thresholds differ (seen with LightGBM's
# multiclass after 10 rounds). Over many rounds a genuine near-tie between two splits can also
# flip on rounding noise (seen with XGBoost's multi:softprob after 20 rounds), so runs are short.
TOL = 1e-6

# The README's examples, executed verbatim by test_readme_snippets below.
XGBOOST_SNIPPET = '''
import numpy as np
import xgboost as xgb
import lossgen.xgboost as lgx

rng = np.random.default_rng(0)
X = rng.normal(size=(1000, 5))
y = (X[:, 0] + 0.5 * rng.normal(size=1000) > 0).astype(float)
dtrain = xgb.DMatrix(X, label=y)

# The objective sees raw margins (here logits); base_score=0 starts every margin at 0.
params = {"base_score": 0.0, "max_depth": 3, "disable_default_eval_metric": 1}
booster = xgb.train(params, dtrain, num_boost_round=20, evals=[(dtrain, "train")], verbose_eval=False,
                    obj=lgx.objective("focal", gamma=2.0), custom_metric=lgx.metric("focal", gamma=2.0))
margins = booster.predict(dtrain, output_margin=True)
print("accuracy", np.mean((margins > 0) == y))

model = xgb.XGBRegressor(n_estimators=20, base_score=0.0, objective=lgx.sklearn_objective("huber", delta=1.0))
model.fit(X, X[:, 0] + rng.standard_t(2, size=1000))
'''

LIGHTGBM_SNIPPET = '''
import numpy as np
import lightgbm as lgb
import lossgen.lightgbm as lgl

rng = np.random.default_rng(0)
X = rng.normal(size=(1000, 5))
labels = np.digitize(X[:, 0] + 0.3 * rng.normal(size=1000), [-0.5, 0.5])  # 3 classes
train = lgb.Dataset(X, label=labels)

# Scores are (rows, 3) raw logits; LightGBM starts a custom objective at 0.
params = {"objective": lgl.objective("cross_entropy"), "num_class": 3, "metric": "None", "verbose": -1}
booster = lgb.train(params, train, num_boost_round=20, valid_sets=[train], feval=lgl.metric("cross_entropy"))
scores = booster.predict(X)
print("accuracy", np.mean(scores.argmax(axis=1) == labels))

# The pinball loss is flat (Hessian 0): lossgen warns once and boosts with Hessian 1.
model = lgb.LGBMRegressor(n_estimators=20, objective=lgl.objective("quantile", tau=0.9), verbose=-1)
model.fit(X, X[:, 0] + rng.normal(size=1000))
'''


# ---------------------------------------------------------------------------------------------
# Imports


def test_import_lossgen_imports_no_booster():
    code = (
        "import sys, lossgen, lossgen.xgboost, lossgen.lightgbm\n"
        "assert 'xgboost' not in sys.modules and 'lightgbm' not in sys.modules, sorted(sys.modules)\n"
        "try:\n"
        "    import xgboost\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    assert hasattr(xgboost, 'DMatrix'), xgboost.__file__  # the real package, not lossgen.xgboost\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------------------------
# The adapter itself (no booster needed)


def test_objective_weights_multiply_grad_and_hess():
    lgx = pytest.importorskip("lossgen.xgboost")
    obj = lgx.objective("bce_with_logits")
    p = RNG.normal(size=50)
    y = (RNG.uniform(size=50) > 0.5).astype(np.float32)
    w = RNG.uniform(0.1, 2, size=50)
    g, h = obj(y, p)
    gw, hw = obj(y, p, sample_weight=w)
    assert g.dtype == np.float64 and g.shape == (50,)
    np.testing.assert_allclose(gw, g * w, rtol=1e-15)
    np.testing.assert_allclose(hw, h * w, rtol=1e-15)
    s = 1 / (1 + np.exp(-p))
    np.testing.assert_allclose(g, s - y, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h, s * (1 - s), rtol=1e-12)


def test_hessian_floor_policies():
    lgx = pytest.importorskip("lossgen.xgboost")
    y, p = np.zeros(6), np.array([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0])
    # huber (delta=1): Hessian 1 inside |r| <= 1, 0 beyond.
    with pytest.warns(RuntimeWarning, match="'huber'.*mean positive Hessian"):
        _, h = lgx.objective("huber")(y, p)
    np.testing.assert_array_equal(h, np.ones(6))
    # absolute_error is flat everywhere: "auto" gives Hessian 1 per unit of weight.
    w = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    with pytest.warns(RuntimeWarning, match="'absolute_error'"):
        _, h = lgx.objective("absolute_error")(y, p, sample_weight=w)
    np.testing.assert_array_equal(h, w)
    # A number raises every value below it (times the weight).
    with pytest.warns(RuntimeWarning, match="hessian_floor=0.5"):
        _, h = lgx.objective("huber", hessian_floor=0.5, delta=1.0)(y, p, sample_weight=w)
    np.testing.assert_array_equal(h, [0.0, 1.0, 2.0, 3.0, 4.0, 2.5])
    # None turns the floor off.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, h = lgx.objective("absolute_error", hessian_floor=None)(y, p)
        assert not h.any()
        # A positive Hessian, however small, never trips the floor: values untouched.
        p = np.array([-40.0, -3, 0, 3, 40, 700])
        _, h = lgx.objective("bce_with_logits")(np.ones(6), p)
        np.testing.assert_array_equal(h, lg.get("bce_with_logits").compile(reduction="none")(np.ones(6), p).hess)
        assert h.min() > 0
        # At margin 800 it underflows to 0; a sample of weight 0 does not trip the floor ...
        obj = lgx.objective("bce_with_logits")
        _, h = obj(np.ones(2), np.array([0.0, 800.0]), sample_weight=np.array([1.0, 0.0]))
        assert h[1] == 0.0 and not obj.floored
    # ... one of positive weight does.
    with pytest.warns(RuntimeWarning, match="'bce_with_logits'"):
        _, h = obj(np.ones(2), np.array([0.0, 800.0]))
    np.testing.assert_array_equal(h, [0.25, 0.25])
    with pytest.raises(lg.InputError, match="hessian_floor"):
        lgx.objective("huber", hessian_floor=0)


def test_floor_warns_once_per_objective():
    lgx = pytest.importorskip("lossgen.xgboost")
    obj = lgx.objective("absolute_error")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            obj(Y_REG, np.zeros(N))
    assert len(caught) == 1 and "absolute_error" in str(caught[0].message)


def test_adapter_errors():
    lgx = pytest.importorskip("lossgen.xgboost")
    with pytest.raises(lg.InputError, match="unknown param 'gama'"):
        lgx.objective("focal", gama=2.0)
    three = lg.Loss("three", "w*(p - y)**2", inputs=["y", "p", "w"], wrt="p")
    with pytest.raises(lg.InputError, match="exactly two inputs"):
        lgx.objective(three)
    with pytest.raises(lg.SpecError, match="unknown loss"):
        lgx.metric("no_such_loss")
    ce = lgx.objective("cross_entropy")
    with pytest.raises(lg.InputError, match="integer class labels"):
        ce(np.array([0.5, 1.0]), np.zeros((2, 3)))
    with pytest.raises(lg.InputError, match=r"\(rows, classes\)"):
        ce(np.array([0.0, 1.0]), np.zeros(2))


@pytest.mark.filterwarnings("ignore:lossgen. the Hessian")  # focal's floor acts on these random margins
def test_objects_copy_and_pickle():
    lgx = pytest.importorskip("lossgen.xgboost")
    lgl = pytest.importorskip("lossgen.lightgbm")
    for made in (lgx.objective("focal", gamma=1.5), lgx.metric("huber", delta=2.0), lgl.objective("focal", alpha=0.5),
                 lgl.metric("bce_with_logits")):
        assert copy.deepcopy(made) is made  # LightGBM deep-copies its params
        again = pickle.loads(pickle.dumps(made))
        assert type(again) is type(made) and again.params == made.params and again.name == made.name
    # A catalog Loss object pickles by name.
    assert pickle.loads(pickle.dumps(lgx.objective(lg.get("huber"), delta=2.0))).params == {"delta": 2.0}
    y, p = Y_BIN[:20], RNG.normal(size=20)
    obj = lgx.objective("focal", gamma=1.5)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(obj))(y, p)[0], obj(y, p)[0])


# ---------------------------------------------------------------------------------------------
# XGBoost


def _xgb_margins(params, label, obj=None, weight=None, rounds=ROUNDS, data=X, **train):
    """Raw margins on `data` (by default the training rows, see TOL) after `rounds` rounds."""
    xgb = pytest.importorskip("xgboost")
    dtrain = xgb.DMatrix(X, label=label, weight=weight)
    params = {"tree_method": "hist", "max_depth": 4, "eta": 0.3, "nthread": 1, **params}
    booster = xgb.train(params, dtrain, num_boost_round=rounds, obj=obj, **train)
    return booster.predict(xgb.DMatrix(data), output_margin=True)


@pytest.mark.parametrize("weighted", [False, True])
def test_xgboost_squared_error_matches_builtin(weighted):
    lgx = pytest.importorskip("lossgen.xgboost")
    w = WEIGHT if weighted else None
    builtin = _xgb_margins({"objective": "reg:squarederror", "base_score": 0.0}, Y_REG, weight=w)
    # reg:squarederror uses grad p - y, hess 1: half of lossgen's squared_error (p - y)**2, whose
    # grad is 2(p - y) and hess 2. Halving the loss gives the built-in's gradients exactly.
    half = _xgb_margins({"base_score": 0.0}, Y_REG, lgx.objective(0.5 * lg.get("squared_error")), weight=w)
    np.testing.assert_allclose(half, builtin, rtol=0, atol=TOL)
    # The catalog loss itself gives the same trees when reg_lambda=0: a leaf's value -G/(H + lambda)
    # and a split's gain G**2/(H + lambda) are then unchanged (resp. doubled) when G and H double,
    # and min_child_weight (sum of H) is set to 0 so that it cannot bind differently.
    free = {"reg_lambda": 0.0, "min_child_weight": 0.0, "base_score": 0.0}
    builtin0 = _xgb_margins({**free, "objective": "reg:squarederror"}, Y_REG, weight=w)
    full = _xgb_margins(free, Y_REG, lgx.objective("squared_error"), weight=w)
    np.testing.assert_allclose(full, builtin0, rtol=0, atol=TOL)


@pytest.mark.parametrize("weighted", [False, True])
def test_xgboost_bce_with_logits_matches_binary_logistic(weighted):
    lgx = pytest.importorskip("lossgen.xgboost")
    w = WEIGHT if weighted else None
    # binary:logistic reads base_score as a probability (0.5 is margin 0); a custom objective
    # reads it as a margin. Both runs start at margin 0.
    builtin = _xgb_margins({"objective": "binary:logistic", "base_score": 0.5}, Y_BIN, weight=w)
    ours = _xgb_margins({"base_score": 0.0}, Y_BIN, lgx.objective("bce_with_logits"), weight=w)
    assert np.abs(builtin).max() > 1  # the trees did something
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=TOL)


@pytest.mark.parametrize("weighted", [False, True])
def test_xgboost_cross_entropy_matches_multi_softprob(weighted):
    lgx = pytest.importorskip("lossgen.xgboost")
    w = WEIGHT if weighted else None
    # multi:softprob uses grad p - onehot but hess 2p(1 - p), twice the true Hessian diagonal that
    # lossgen derives. With reg_lambda=0 (and min_child_weight=0 so it cannot bind) a leaf is
    # -eta*G/H: the built-in's leaves are half of lossgen's, split choices (gain G**2/H) are the
    # same, so lossgen with eta/2 grows the built-in's trees.
    free = {"reg_lambda": 0.0, "min_child_weight": 0.0, "base_score": 0.0, "num_class": 4}
    builtin = _xgb_margins({**free, "objective": "multi:softprob", "eta": 0.3}, Y_MULTI, weight=w)
    ours = _xgb_margins({**free, "eta": 0.15}, Y_MULTI, lgx.objective("cross_entropy"), weight=w)
    assert ours.shape == (N, 4)
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=TOL)


def test_xgboost_metric_is_the_mean_loss():
    xgb = pytest.importorskip("xgboost")
    lgx = pytest.importorskip("lossgen.xgboost")
    dtrain = xgb.DMatrix(X, label=Y_BIN, weight=WEIGHT)
    log = {}
    booster = xgb.train(
        {"base_score": 0.0, "disable_default_eval_metric": 1, "nthread": 1}, dtrain, num_boost_round=3,
        obj=lgx.objective("focal"), custom_metric=lgx.metric("focal"), evals=[(dtrain, "train")],
        evals_result=log, verbose_eval=False,
    )
    assert list(log["train"]) == ["focal"]
    m = booster.predict(dtrain, output_margin=True).astype(np.float64)
    per_sample = lg.get("focal").compile(reduction="none")(Y_BIN, m).loss
    assert log["train"]["focal"][-1] == pytest.approx(np.sum(WEIGHT * per_sample) / np.sum(WEIGHT), rel=1e-6)


def test_xgboost_focal_trains():
    lgx = pytest.importorskip("lossgen.xgboost")
    margins = _xgb_margins({"base_score": 0.0}, Y_BIN, lgx.objective("focal", alpha=0.5, gamma=2.0), rounds=30, data=X_TEST)
    prob = 1 / (1 + np.exp(-margins.astype(np.float64)))
    log_loss = -np.mean(Y_TEST_BIN * np.log(prob) + (1 - Y_TEST_BIN) * np.log1p(-prob))
    accuracy = np.mean((margins > 0) == Y_TEST_BIN)
    # The untrained model (margin 0) has log-loss log(2) and at best the majority rate.
    assert log_loss < 0.75 * math.log(2)
    assert accuracy > max(Y_TEST_BIN.mean(), 1 - Y_TEST_BIN.mean()) + 0.25


def test_xgboost_absolute_error_warns_once_and_trains():
    lgx = pytest.importorskip("lossgen.xgboost")
    obj = lgx.objective("absolute_error")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        margins = _xgb_margins({"base_score": 0.0}, Y_REG, obj, rounds=20, data=X_TEST)
    assert [str(c.message).count("absolute_error") for c in caught if c.category is RuntimeWarning] == [1]
    y_test = X_TEST[:, 0] + np.sin(2 * X_TEST[:, 1])
    assert np.mean(np.abs(margins - y_test)) < 0.6 * np.mean(np.abs(y_test - np.median(Y_REG)))


@pytest.mark.filterwarnings("ignore:lossgen. the Hessian")  # huber's floor, tested above
def test_xgboost_sklearn_estimators():
    xgb = pytest.importorskip("xgboost")
    lgx = pytest.importorskip("lossgen.xgboost")
    common = {"n_estimators": ROUNDS, "max_depth": 4, "learning_rate": 0.3, "n_jobs": 1, "tree_method": "hist"}
    # Regressor, with sample weights: the built-in and half squared error (see above).
    builtin = xgb.XGBRegressor(objective="reg:squarederror", base_score=0.0, **common).fit(X, Y_REG, sample_weight=WEIGHT)
    ours = xgb.XGBRegressor(objective=lgx.sklearn_objective(0.5 * lg.get("squared_error")), base_score=0.0, **common)
    ours.fit(X, Y_REG, sample_weight=WEIGHT)
    np.testing.assert_allclose(ours.predict(X), builtin.predict(X), rtol=0, atol=TOL)
    # Classifier: with a callable objective XGBClassifier still configures binary:logistic, so
    # base_score is a probability in both runs (0.5 is margin 0); compare margins.
    builtin = xgb.XGBClassifier(base_score=0.5, **common).fit(X, Y_BIN)
    ours = xgb.XGBClassifier(objective=lgx.sklearn_objective("bce_with_logits"), base_score=0.5, **common).fit(X, Y_BIN)
    np.testing.assert_allclose(
        ours.predict(X, output_margin=True), builtin.predict(X, output_margin=True), rtol=0, atol=TOL
    )
    # Multi-class: classes are encoded 0..K-1 for the objective; margins are (rows, classes).
    multi = xgb.XGBClassifier(objective=lgx.sklearn_objective("cross_entropy"), **common).fit(X, Y_MULTI.astype(int))
    margins = multi.predict(X_TEST, output_margin=True)
    assert margins.shape == (N, 4)
    # eval_metric takes the metric too (called as metric(y_true, y_pred, sample_weight=...)).
    reg = xgb.XGBRegressor(objective=lgx.sklearn_objective("huber"), eval_metric=lgx.metric("huber"), base_score=0.0, **common)
    reg.fit(X, Y_REG, eval_set=[(X, Y_REG)], verbose=False)
    history = reg.evals_result()["validation_0"]["huber"]
    assert history[-1] < history[0]


# ---------------------------------------------------------------------------------------------
# LightGBM


def _lgb_margins(params, label, weight=None, rounds=ROUNDS, data=X, **train):
    """Raw scores on `data` (by default the training rows, see TOL) after `rounds` rounds."""
    lgb = pytest.importorskip("lightgbm")
    dataset = lgb.Dataset(X, label=label, weight=weight)
    # boost_from_average=False: built-in objectives otherwise start from the label mean (its
    # logit, or the class log-frequencies), while a custom objective always starts at 0.
    params = {"num_leaves": 15, "learning_rate": 0.3, "boost_from_average": False, "verbose": -1, "num_threads": 1,
              "deterministic": True, **params}
    booster = lgb.train(params, dataset, num_boost_round=rounds, **train)
    return booster.predict(data, raw_score=True)


@pytest.mark.parametrize("weighted", [False, True])
def test_lightgbm_regression_and_binary_match_builtins(weighted):
    lgl = pytest.importorskip("lossgen.lightgbm")
    w = WEIGHT if weighted else None
    # LightGBM's "regression" is grad p - y, hess 1: half of lossgen's squared_error.
    builtin = _lgb_margins({"objective": "regression"}, Y_REG, w)
    ours = _lgb_margins({"objective": lgl.objective(0.5 * lg.get("squared_error"))}, Y_REG, w)
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=TOL)
    builtin = _lgb_margins({"objective": "binary"}, Y_BIN, w)
    ours = _lgb_margins({"objective": lgl.objective("bce_with_logits")}, Y_BIN, w)
    assert np.abs(builtin).max() > 1
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=TOL)


@pytest.mark.parametrize("weighted", [False, True])
def test_lightgbm_cross_entropy_matches_multiclass(weighted):
    lgl = pytest.importorskip("lossgen.lightgbm")
    w = WEIGHT if weighted else None
    # LightGBM's "multiclass" scales the Hessian by K/(K-1) (hess = K/(K-1) p(1-p)); with its
    # default lambda_l2=0 a leaf is -lr*G/H, so lossgen with lr*(K-1)/K grows the same trees.
    k = 4
    builtin = _lgb_margins({"objective": "multiclass", "num_class": k}, Y_MULTI, w)
    ours = _lgb_margins({"objective": lgl.objective("cross_entropy"), "num_class": k, "learning_rate": 0.3 * (k - 1) / k}, Y_MULTI, w)
    assert ours.shape == (N, k)
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=TOL)


def test_lightgbm_feval():
    lgb = pytest.importorskip("lightgbm")
    lgl = pytest.importorskip("lossgen.lightgbm")
    train = lgb.Dataset(X, label=Y_BIN, weight=WEIGHT)
    log = {}
    booster = lgb.train(
        {"objective": lgl.objective("focal"), "metric": "None", "verbose": -1, "num_threads": 1}, train,
        num_boost_round=5, valid_sets=[train], valid_names=["train"], feval=lgl.metric("focal"),
        callbacks=[lgb.record_evaluation(log)],
    )
    scores = booster.predict(X)
    per_sample = lg.get("focal").compile(reduction="none")(Y_BIN, scores).loss
    assert log["train"]["focal"][-1] == pytest.approx(np.sum(WEIGHT * per_sample) / np.sum(WEIGHT), rel=1e-9)
    assert log["train"]["focal"][-1] < log["train"]["focal"][0]
    assert lgl.metric("focal")(scores, train) == ("focal", pytest.approx(log["train"]["focal"][-1]), False)


def test_lightgbm_absolute_error_warns_once_and_trains():
    lgl = pytest.importorskip("lossgen.lightgbm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        margins = _lgb_margins({"objective": lgl.objective("absolute_error")}, Y_REG, rounds=20, data=X_TEST)
    assert [str(c.message).count("absolute_error") for c in caught if c.category is RuntimeWarning] == [1]
    y_test = X_TEST[:, 0] + np.sin(2 * X_TEST[:, 1])
    assert np.mean(np.abs(margins - y_test)) < 0.6 * np.mean(np.abs(y_test - np.median(Y_REG)))


@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")  # LightGBM 4.7; eval_X is newer
def test_lightgbm_sklearn_estimators():
    lgb = pytest.importorskip("lightgbm")
    lgl = pytest.importorskip("lossgen.lightgbm")
    common = {"n_estimators": ROUNDS, "num_leaves": 15, "learning_rate": 0.3, "n_jobs": 1, "verbose": -1, "deterministic": True}
    builtin = lgb.LGBMRegressor(objective="regression", boost_from_average=False, **common).fit(X, Y_REG, sample_weight=WEIGHT)
    ours = lgb.LGBMRegressor(objective=lgl.objective(0.5 * lg.get("squared_error")), **common)
    ours.fit(X, Y_REG, sample_weight=WEIGHT, eval_set=[(X_TEST, X_TEST[:, 0])], eval_metric=lgl.metric(0.5 * lg.get("squared_error")))
    np.testing.assert_allclose(ours.predict(X), builtin.predict(X), rtol=0, atol=TOL)
    history = ours.evals_result_["valid_0"]["squared_error_scaled"]
    assert history[-1] < history[0]
    builtin = lgb.LGBMClassifier(boost_from_average=False, **common).fit(X, Y_BIN)
    ours = lgb.LGBMClassifier(objective=lgl.objective("bce_with_logits"), **common).fit(X, Y_BIN)
    np.testing.assert_allclose(ours.predict(X, raw_score=True), builtin.predict(X, raw_score=True), rtol=0, atol=TOL)
    multi = lgb.LGBMClassifier(objective=lgl.objective("cross_entropy"), **common).fit(X, Y_MULTI.astype(int))
    assert multi.predict(X_TEST, raw_score=True).shape == (N, 4)


# ---------------------------------------------------------------------------------------------
# README examples


def _run_snippets(*snippets):
    """Run code blocks one after another in a fresh interpreter, as a reader would; its stdout.

    One OpenMP thread, and no spinning: the blocks use the libraries' default thread counts
    (XGBoost and LGBMRegressor take every core whatever OMP_NUM_THREADS says, hence the limit),
    and on a busy machine their spinning threads stretched a one-second run to a minute.
    """
    code = "\n".join(f"exec(compile({s!r}, '<README block {i}>', 'exec'), {{'__name__': '__main__'}})" for i, s in enumerate(snippets))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_THREAD_LIMIT": "1", "OMP_WAIT_POLICY": "passive", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_readme_snippets():
    pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")
    out = _run_snippets(XGBOOST_SNIPPET, LIGHTGBM_SNIPPET)
    accuracies = [float(a) for a in re.findall(r"accuracy ([0-9.]+)", out)]
    assert len(accuracies) == 2 and min(accuracies) > 0.8, out


def test_readme_boosting_blocks_run():
    """Every ```python block of README.md that uses lossgen.xgboost or lossgen.lightgbm runs."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    blocks = [b for b in blocks if "lossgen.xgboost" in b or "lossgen.lightgbm" in b]
    assert len(blocks) >= 2, "README.md lost its XGBoost and LightGBM examples"
    pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")
    _run_snippets(*blocks)
