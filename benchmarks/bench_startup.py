"""Start-up cost: a fresh Python process that imports lossgen and calls one catalog kernel.

Each measurement is a new interpreter, timed from outside (so interpreter start-up counts, as it
does for a user), with the parts timed inside it. Runs of the different kinds are interleaved,
so a slow spell of a shared machine lands on all of them alike.

Reported: `to result`, from launching the interpreter to the first call's return (the issue's
measure), and `wall`, which adds the interpreter's exit.

  floor     numpy + numba, then the first call of one @njit(cache=True) function that numba
            finds in its cache: what any numba-compiled library pays before its first result.
  cached    `import lossgen`, lg.get(name).compile(dtype), first call at n = 1000, with the kernel
            already in lossgen's cache (the common case: every process after the first).
  compile   the same in a process with an empty lossgen cache: the kernel's source comes from
            generated/ (lossgen.prebuilt) and numba compiles it (kmath's functions come from
            numba's cache, as after install). The first compile of a catalog kernel.
  render    as compile, with generated/ out of reach: SymPy derives, lowers and renders the
            kernel first, as for a loss of the user's own.
  cold      as compile, with numba's cache empty too (NUMBA_CACHE_DIR): kmath is compiled as well.

    python benchmarks/bench_startup.py [--losses huber,focal,log_cosh] [--repeat 7] [--dtype float64]
                                       [--python PATH]

--python runs the fresh processes with another interpreter (its environment needs lossgen and
numpy), e.g. one where only lossgen's core dependencies are installed: numba's first call imports
scipy.linalg to look for BLAS when SciPy is installed, which costs about 0.2 s, so an environment
with the test extras (SciPy among them) starts slower than a core install.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _peers
from _peers import make_inputs  # noqa: E402

FLOOR = textwrap.dedent(
    """
    import json, time
    t0 = time.perf_counter()
    import numpy as np
    import numba

    @numba.njit(cache=True)
    def step(y, p, g, h):
        for i in range(p.shape[0]):
            g[i] = p[i] - y[i]
            h[i] = p[i] + y[i]
        return 0.0

    y = np.ones(1000); p = np.ones(1000)
    t1 = time.perf_counter()
    step(y, p, np.empty(1000), np.empty(1000))
    t2 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "first_call": t2 - t1, "sympy": False, "done_at": time.time()}))
    """
)

LOSSGEN = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    import lossgen as lg
    if sys.argv[4] == "render":  # generated/ out of reach: derive and render the kernel
        import lossgen.prebuilt
        lossgen.prebuilt.GENERATED_DIR = lossgen.prebuilt.GENERATED_DIR / "absent"
    t1 = time.perf_counter()
    kernel = lg.get(sys.argv[1]).compile(dtype=sys.argv[2])
    t2 = time.perf_counter()
    with np.load(sys.argv[3]) as saved:  # the loss's inputs, drawn from its domain by the parent
        arrays = [saved[f"a{i}"] for i in range(len(saved.files))]
    t3 = time.perf_counter()
    kernel(*arrays)
    t4 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "compile": t2 - t1, "first_call": t4 - t3, "sympy": "sympy" in sys.modules,
                      "done_at": time.time()}))
    """
)


KINDS = ("floor", "cached", "compile", "render", "cold")


def has_scipy(python: str) -> bool:
    """Whether SciPy is importable by that interpreter (numba imports it at its first call)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('scipy') is None)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def run(python: str, script: str, args: list[str], env: dict) -> dict:
    """One fresh interpreter running the script file: its wall time from outside and the parts
    it timed inside. (A file, not -c: numba caches only functions that have a source file.)"""
    launched = time.time()
    done = subprocess.run([python, script, *args], capture_output=True, text=True, env=env, timeout=600)
    wall = time.time() - launched
    if done.returncode != 0:
        raise SystemExit(f"a start-up run failed:\n{done.stderr.strip()[-2000:]}")
    parts = json.loads(done.stdout.strip().splitlines()[-1])
    # To the first result: from launching the interpreter to the kernel's return, without the
    # interpreter's exit (tearing numba and lossgen down adds 0.15-0.4 s after the work is done).
    return {"wall": wall, "to_result": parts.pop("done_at") - launched, **parts}


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the measurements; print a Markdown table and return the rows (for --json and tests)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", default="huber,focal,log_cosh", help="catalog losses, comma-separated")
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per kind and loss")
    parser.add_argument("--kinds", default=",".join(KINDS), help="which measurements, comma-separated")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the fresh processes")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    scipy_installed = has_scipy(args.python)
    kinds = args.kinds.split(",")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kind {unknown[0]!r}; kinds: {', '.join(KINDS)}")
    losses = args.losses.split(",")
    samples: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="lossgen-startup-") as scratch:
        scripts = {}
        for label, text in (("floor", FLOOR), ("lossgen", LOSSGEN)):
            scripts[label] = os.path.join(scratch, f"startup_{label}.py")
            with open(scripts[label], "w", encoding="utf-8") as handle:
                handle.write(text)
        inputs = {}
        for name in losses:
            inputs[name] = os.path.join(scratch, f"{name}.npz")
            np.savez(inputs[name], **{f"a{i}": a for i, a in enumerate(make_inputs(name, 1000, args.dtype))})
        # Python writes bytecode caches as it does for users: with PYTHONDONTWRITEBYTECODE (set in
        # some sandboxes and CI images) every run would compile lossgen's modules from source.
        environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

        # Each kind's environment for one run: lossgen's kmath functions stay in numba's cache
        # where the install keeps them, except for "cold"; "compile" and "cold" start empty.
        def env_for(kind: str, name: str, round_: int) -> dict:
            fresh = os.path.join(scratch, f"{kind}-{name}-{round_}")
            return {**environ, **{
                "floor": {"NUMBA_CACHE_DIR": os.path.join(scratch, "numba-floor")},
                "cached": {"LOSSGEN_CACHE_DIR": os.path.join(scratch, "warm")},
                "compile": {"LOSSGEN_CACHE_DIR": fresh},
                "render": {"LOSSGEN_CACHE_DIR": fresh},
                "cold": {"LOSSGEN_CACHE_DIR": fresh, "NUMBA_CACHE_DIR": fresh + "-numba"},
            }[kind]}

        def measure(kind: str, name: str, round_: int) -> dict:
            if kind == "floor":
                return run(args.python, scripts["floor"], [], env_for(kind, name, round_))
            return run(args.python, scripts["lossgen"], [name, args.dtype, inputs[name], kind], env_for(kind, name, round_))

        # Unmeasured first runs fill the caches that "floor" and "cached" find.
        if "floor" in kinds:
            measure("floor", "-", -1)
        if "cached" in kinds:
            for name in losses:
                measure("cached", name, -1)
        for round_ in range(args.repeat):
            for kind in kinds:
                for name in ["-"] if kind == "floor" else losses:
                    samples.setdefault((kind, name), []).append(measure(kind, name, round_))
    floor = statistics.median(s["to_result"] for s in samples[("floor", "-")]) if ("floor", "-") in samples else None
    rows = []
    for (kind, name), runs in samples.items():
        row = {"kind": kind, "loss": name, "dtype": args.dtype, "runs": len(runs), "scipy_installed": scipy_installed}
        for part in ("to_result", "wall", "import", "compile", "first_call"):
            values = [r[part] for r in runs if part in r]
            if values:
                row[part] = statistics.median(values)
        row["min_to_result"] = min(r["to_result"] for r in runs)
        row["sympy_imported"] = any(r["sympy"] for r in runs)
        row["vs_floor"] = row["to_result"] / floor if floor else None
        rows.append(row)
    print(f"Fresh-process start-up, {args.dtype}, median of {args.repeat} (seconds; ratio to the numba floor)")
    print(f"Interpreter: {args.python} (SciPy installed: {'yes' if scipy_installed else 'no'})\n")
    print("| kind | loss | to result | min | vs floor | wall with exit | import | compile | first call | SymPy imported |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        cells = [f"{row[p]:.2f}" if p in row else "-" for p in ("to_result", "min_to_result")]
        ratio = f"{row['vs_floor']:.2f}x" if row["vs_floor"] else "-"
        parts = [f"{row[p]:.2f}" if p in row else "-" for p in ("wall", "import", "compile", "first_call")]
        print(f"| {row['kind']} | {row['loss']} | {' | '.join(cells)} | {ratio} | {' | '.join(parts)} | {'yes' if row['sympy_imported'] else 'no'} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)
    return rows


if __name__ == "__main__":
    main()
