"""Training time with lossgen's objectives against XGBoost's and LightGBM's built-in ones.

Same data, same parameters, one process; for each pair the script also reports how far the
predictions are apart (raw margins), since a fast objective that trains a different model would
mean nothing. The built-in objectives differ from lossgen's derivatives by constant factors
(reg:squarederror and LightGBM's regression use half the squared error; multi:softprob uses twice
the true Hessian diagonal), so each pair is set up to grow the same trees, as in tests/test_boost.py.

    python benchmarks/bench_boost.py [--rows 200000] [--rounds 50] [--threads 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import lossgen as lg


def best_time(fit, repeat: int):
    """(best seconds over `repeat` calls of fit(), the last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fit()
        best = min(best, time.perf_counter() - start)
    return best, result


def data(rows: int, seed: int = 0):
    """Features and regression, binary and 4-class labels that depend on them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 10))
    signal = x[:, 0] + np.sin(2 * x[:, 1]) + 0.5 * x[:, 2] * x[:, 3]
    y_reg = signal + 0.3 * rng.normal(size=rows)
    y_bin = (signal + rng.logistic(size=rows) > 0).astype(np.float64)
    y_multi = np.digitize(signal + 0.5 * rng.normal(size=rows), [-1.0, 0.0, 1.0]).astype(np.float64)
    return x, y_reg, y_bin, y_multi


def xgboost_cases(x, labels, rounds, threads):
    """(case, built-in fit, lossgen fit) for XGBoost's native train API."""
    import xgboost as xgb

    import lossgen.xgboost as lgx

    y_reg, y_bin, y_multi = labels
    base = {"tree_method": "hist", "max_depth": 6, "nthread": threads, "base_score": 0.0}
    free = {"reg_lambda": 0.0, "min_child_weight": 0.0}

    def train(params, label, obj=None):
        dtrain = xgb.DMatrix(x, label=label, nthread=threads)
        return lambda: xgb.train({**base, **params}, dtrain, num_boost_round=rounds, obj=obj).predict(
            dtrain, output_margin=True)

    half_squared = 0.5 * lg.get("squared_error")
    return [
        ("squared error", train({"objective": "reg:squarederror"}, y_reg), train({}, y_reg, lgx.objective(half_squared))),
        ("logistic (bce_with_logits)", train({"objective": "binary:logistic", "base_score": 0.5}, y_bin),
         train({}, y_bin, lgx.objective("bce_with_logits"))),
        ("softmax, 4 classes (cross_entropy)", train({**free, "objective": "multi:softprob", "num_class": 4, "eta": 0.3}, y_multi),
         train({**free, "num_class": 4, "eta": 0.15}, y_multi, lgx.objective("cross_entropy"))),
    ]


def lightgbm_cases(x, labels, rounds, threads):
    """(case, built-in fit, lossgen fit) for LightGBM's native train API."""
    import lightgbm as lgb

    import lossgen.lightgbm as lgl

    y_reg, y_bin, y_multi = labels
    base = {"num_leaves": 63, "num_threads": threads, "verbose": -1, "deterministic": True, "force_row_wise": True}

    def train(params, label):
        def fit():
            booster = lgb.train({**base, **params}, lgb.Dataset(x, label=label), num_boost_round=rounds)
            return booster.predict(x, raw_score=True)

        return fit

    half_squared = 0.5 * lg.get("squared_error")
    # boost_from_average is off for the built-in ones: a custom objective starts from 0.
    start0 = {"boost_from_average": False}
    return [
        ("squared error", train({"objective": "regression", **start0}, y_reg), train({"objective": lgl.objective(half_squared)}, y_reg)),
        ("logistic (bce_with_logits)", train({"objective": "binary", **start0}, y_bin),
         train({"objective": lgl.objective("bce_with_logits")}, y_bin)),
    ]


def main(argv=None) -> int:
    """Print one markdown table: per library and case, seconds, the ratio and the margin gap."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    x, *labels = data(args.rows)
    print(f"# {args.rows:,} rows x {x.shape[1]} features, {args.rounds} rounds, {args.threads} thread(s), best of {args.repeat}")
    print("| library | objective | built-in (s) | lossgen (s) | lossgen / built-in | max margin gap |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for library, cases in (("xgboost", xgboost_cases), ("lightgbm", lightgbm_cases)):
        try:
            made = cases(x, labels, args.rounds, args.threads)
        except ImportError as exc:
            print(f"{library} not installed ({exc}); skipped", file=sys.stderr)
            continue
        for case, builtin_fit, lossgen_fit in made:
            lossgen_fit()  # compiles (or loads) the kernel outside the timing
            t_builtin, m_builtin = best_time(builtin_fit, args.repeat)
            t_lossgen, m_lossgen = best_time(lossgen_fit, args.repeat)
            gap = float(np.max(np.abs(np.asarray(m_builtin, np.float64) - np.asarray(m_lossgen, np.float64))))
            print(f"| {library} | {case} | {t_builtin:.2f} | {t_lossgen:.2f} | {t_lossgen / t_builtin:.2f}x | {gap:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
