"""Command line: lossgen list | inspect | build | verify | bench | plot.

Exit codes: 0 success; 1 a check failed (verification, or a stale generated/); 2 bad input or
usage, with one line on stderr that names the problem and no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import sympy as sp

from .errors import LossgenError
from .prebuilt import GENERATED_DIR, MANIFEST_NAME, manifest_text

REPO_ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """Bad command-line usage; reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _count(low: int, high: int, what: str):
    """An argparse type: an integer in [low, high] (a count of samples, a seed)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r:.40}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be between {low} and {high}, got {value}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def resolve_losses(specs: list[str]):
    """Turn NAME, FILE.toml or FILE.toml:NAME arguments into Loss objects, in order."""
    from .catalog import get
    from .specfile import load

    losses = []
    for spec in specs:
        path, _, name = spec.partition(".toml")
        if _ or spec.endswith(".toml"):
            file_losses = load(path + ".toml")
            name = name.lstrip(":")
            if name:
                if name not in file_losses:
                    raise UsageError(f"{path}.toml has no loss {name!r}; it has: {', '.join(file_losses)}")
                losses.append(file_losses[name])
            else:
                losses.extend(file_losses.values())
        else:
            losses.append(get(spec))
    return losses


def _print_expr(label: str, expr, latex: bool) -> None:
    if latex:
        print(f"{label}: {sp.latex(expr)}")
    else:
        text = sp.pretty(expr, use_unicode=True)
        print(f"{label}:" + ("\n" + _indent(text) if "\n" in text else " " + text))


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def cmd_list(args) -> int:
    """One line per catalog loss: name, convexity verdict, doc (or, with --task, why it fits).

    --convex keeps losses proved convex (or affine); --robust those with a proved finite
    gradient bound (robust to outliers); --smooth those proved C1 or smoother."""
    import math

    from . import catalog, properties
    from .tasks import fits

    shown = 0
    for name, loss in catalog().items():
        fit = fits(name, args.task) if args.task else None
        if args.task and fit is None:
            continue
        convexity = loss.convexity()
        if args.convex and not convexity.is_convex:
            continue
        notes = []
        if args.robust:
            bound = properties.grad_bound(loss)
            if bound is None or not math.isfinite(bound):
                continue
            notes.append(f"|grad| <= {bound:.6g}")
        if args.smooth:
            smoothness = properties.smoothness(loss)
            if smoothness not in ("C1", "C2", "Cinf"):
                continue
            notes.append(smoothness)
        description = fit.why if fit else loss.doc
        if notes:
            description += f" [{'; '.join(notes)}]"
        print(f"{name:<26} {convexity.verdict:<8} {description}")
        shown += 1
    if shown == 0:
        print("lossgen list: no catalog loss matches these filters", file=sys.stderr)
    return 0


def _print_properties(loss) -> None:
    """The properties block of `lossgen inspect`, one line each, with its reason indented."""
    import math

    properties = loss.properties()
    reasons = properties.reasons
    kinks = f" (kinks: {'; '.join(properties.kinks)})" if properties.kinks else ""
    print(f"smoothness: {properties.smoothness}{kinks}")
    print(f"hessian sign: {properties.hessian_sign}")
    if reasons.get("hessian_sign"):
        print(f"    {reasons['hessian_sign']}")
    constant = {True: "yes", False: "no", None: "unknown"}[properties.hessian_constant]
    print(f"constant hessian: {constant}")
    bound = properties.grad_bound
    at = ", ".join(f"{k}={v}" for k, v in properties.grad_bound_params.items())
    where = f" (at {at})" if at else ""
    for w in loss.wrt:
        if bound is None:
            print(f"grad bound: |d loss / d {w}| unknown")
        elif math.isinf(bound):
            print(f"grad bound: |d loss / d {w}| is unbounded{where}")
        else:
            print(f"grad bound: |d loss / d {w}| <= {bound:.6g}{where}")
    if reasons.get("grad_bound"):
        print(f"    {reasons['grad_bound']}")
    below = {True: "yes", False: "no", None: "unknown"}[properties.bounded_below]
    if properties.minimizer:
        below += ", minimizer " + ", ".join(f"{k} = {sp.sstr(v)}" for k, v in properties.minimizer.items())
    print(f"bounded below: {below}")
    if reasons.get("bounded_below"):
        print(f"    {reasons['bounded_below']}")


def cmd_inspect(args) -> int:
    from .domain import interval_text

    for loss in resolve_losses(args.losses):
        print(f"# {loss.name}" + (f" -- {loss.doc}" if loss.doc else ""))
        print(f"inputs: {', '.join(loss.inputs)}; wrt: {', '.join(loss.wrt)}")
        if loss.params:
            print("params: " + ", ".join(f"{k}={v}" for k, v in loss.params.items()))
        print("domain: " + ", ".join(f"{k} in {interval_text(v)}" for k, v in loss.domain.items()))
        _print_expr("loss", loss.expr, args.latex)
        if loss.stable_expr != loss.expr:
            _print_expr("stable form", loss.stable_expr, args.latex)
        if loss.rewrites:
            print("rewrites applied: " + ", ".join(loss.rewrites))
        from .hazards import hazard_report

        for dtype in ("float64", "float32"):
            hazards = hazard_report(loss, dtype)
            if hazards.removed:
                print(f"hazards removed ({dtype}): " + "; ".join(str(h) for h in hazards.removed))
            for hazard in hazards.remaining:
                label = "warning" if hazard in hazards.warnings else "note"
                print(f"{label} ({dtype}): {hazard}")
        for w, g in zip(loss.wrt, loss.grad):
            _print_expr(f"d loss / d {w}", g, args.latex)
        _print_expr("Hessian", loss.hess if len(loss.wrt) > 1 else loss.hess[0, 0], args.latex)
        convexity = loss.convexity()
        print(f"convexity: {convexity.verdict} (method: {convexity.method})")
        if convexity.certificate:
            print(_indent(convexity.certificate))
        if convexity.counterexample:
            print("    counterexample: " + ", ".join(f"{k}={v}" for k, v in convexity.counterexample.items()))
        _print_properties(loss)
        print()
    return 0


def _targets(choice: str) -> list[str]:
    from .render import KERNEL_LAYOUTS

    if choice == "all":
        return list(KERNEL_LAYOUTS)
    if choice not in KERNEL_LAYOUTS:
        raise UsageError(f"target {choice!r} has no kernel layout yet; available: {', '.join(KERNEL_LAYOUTS)}")
    return [choice]


def generated_files(losses, targets) -> dict[Path, str]:
    """Relative path -> source, for every (loss, target, dtype)."""
    from .dtypes import DTYPES
    from .runtime import kernel_source

    from .progress import progress

    jobs = [(loss, target, dtype) for loss in losses for target in targets for dtype in DTYPES]
    files = {}
    for loss, target, dtype in progress(jobs, desc="render", unit="kernel"):
        files[Path(target) / f"{loss.name}_{dtype}.py"] = kernel_source(loss, target, dtype)
    return files


def _differs(path: Path, text: str) -> bool:
    """Whether the file at path is missing or holds other text."""
    return not path.exists() or path.read_text() != text


def cmd_build(args) -> int:
    from . import catalog

    losses = resolve_losses(args.losses) if args.losses else list(catalog().values())
    out = Path(args.output) if args.output else GENERATED_DIR
    files = generated_files(losses, _targets(args.target))
    # A full catalog build owns the directory (files of losses no longer in the catalog go) and
    # writes the manifest that lets the runtime load these files instead of rendering
    # (lossgen.prebuilt): it names the code that rendered them.
    changed = [rel for rel, text in files.items() if _differs(out / rel, text)]
    expected = {out / rel for rel in files}
    extra = [] if args.losses else [p for p in sorted(out.glob("*/*.py")) if p not in expected]
    manifest_path, manifest = out / MANIFEST_NAME, None if args.losses else manifest_text(files)
    manifest_stale = manifest is not None and _differs(manifest_path, manifest)
    if args.check:
        stale = [str(out / rel) for rel in changed] + [str(p) for p in extra] + ([str(manifest_path)] if manifest_stale else [])
        if stale:
            print(f"lossgen build --check: {len(stale)} stale file(s) in {out}, first {stale[0]}; run 'lossgen build'", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files in {out} are up to date")
        return 0
    for rel in changed:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(files[rel])
    for path in extra:
        path.unlink()
    if manifest_stale:
        manifest_path.write_text(manifest)
    print(f"wrote {len(files)} kernel sources to {out}")
    return 0


def cmd_verify(args) -> int:
    from .dtypes import DTYPES
    from .verify import verify

    from .progress import progress, write

    dtypes = DTYPES if args.dtype == "all" else (args.dtype,)
    jobs = [(loss, dtype) for loss in resolve_losses(args.losses) for dtype in dtypes]
    failed = 0
    for loss, dtype in progress(jobs, desc="verify", unit="kernel"):
        report = verify(loss, n=args.n, seed=args.seed, dtype=dtype)
        write(report.summary(), file=sys.stdout)
        for failure in report.failures:
            write(f"    {failure}", file=sys.stdout)
        failed += not report.ok
    return 1 if failed else 0


def cmd_bench(args) -> int:
    losses = resolve_losses(args.losses)
    script = REPO_ROOT / "benchmarks" / "bench_elementwise.py"
    if not script.exists():
        raise UsageError("benchmarks are not available in this installation (benchmarks/ is in the source tree)")
    import runpy

    argv = [str(script), "--losses", ",".join(l.name for l in losses), "--n", str(args.n)]
    old_argv, sys.argv = sys.argv, argv
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = old_argv
    return 0


def cmd_plot(args) -> int:
    """Draw the losses' loss, gradient and Hessian panels (kinks marked) into one image file."""
    params = {}
    for item in args.param or []:
        name, sep, text = item.partition("=")
        try:
            value = float(text)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UsageError(f"lossgen plot: --param takes NAME=VALUE with a number, got {item!r:.60}")
        params[name.strip()] = value
    losses = resolve_losses(args.losses)
    from .plot import plot_losses, save_figure

    try:
        figure = plot_losses(losses, target=args.target, x_range=args.range, params=params, points=args.points)
    except ImportError as exc:  # matplotlib is the [plot] extra
        raise UsageError(str(exc)) from None
    save_figure(figure, args.output)
    print(f"wrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the lossgen command."""
    parser = _Parser(prog="lossgen", description="Loss formulas to verified, fused kernels.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    from .tasks import TASKS

    listing = commands.add_parser("list", help="the catalog, one line a loss with its convexity verdict")
    listing.add_argument("--task", choices=TASKS, help="only losses that fit this problem, with a line on why")
    listing.add_argument("--convex", action="store_true", help="only losses proved convex")
    listing.add_argument("--robust", action="store_true", help="only losses with a proved finite gradient bound")
    listing.add_argument("--smooth", action="store_true", help="only losses proved C1 or smoother")
    listing.set_defaults(run=cmd_list)
    inspect = commands.add_parser("inspect", help="expression, gradient, Hessian, convexity, domain")
    inspect.add_argument("losses", nargs="+", metavar="NAME|FILE.toml[:NAME]")
    inspect.add_argument("--latex", action="store_true", help="print LaTeX instead of pretty text")
    inspect.set_defaults(run=cmd_inspect)
    build = commands.add_parser("build", help="render kernel sources (default: the catalog into generated/)")
    build.add_argument("losses", nargs="*", metavar="NAME|FILE.toml")
    build.add_argument("-o", "--output", help="output directory (default: generated/ of the source tree)")
    build.add_argument("--target", default="all", help="cpu, cuda or all (default all)")
    build.add_argument("--check", action="store_true", help="exit 1 if the files on disk differ, write nothing")
    build.set_defaults(run=cmd_build)
    verify = commands.add_parser("verify", help="finite-difference and accuracy checks of the kernels")
    verify.add_argument("losses", nargs="+", metavar="NAME|FILE.toml")
    verify.add_argument("--dtype", default="all", choices=["float32", "float64", "all"])
    verify.add_argument("-n", type=_count(1, 10_000_000, "n"), default=1000, help="random samples (hard cases are added)")
    verify.add_argument("--seed", type=_count(0, 2**32 - 1, "seed"), default=0)
    verify.set_defaults(run=cmd_verify)
    bench = commands.add_parser("bench", help="the generated kernel against peers, side by side")
    bench.add_argument("losses", nargs="+", metavar="NAME")
    bench.add_argument("--n", type=_count(1, 10**9, "n"), default=10_000_000)
    bench.set_defaults(run=cmd_bench)
    plot = commands.add_parser("plot", help="loss, gradient and Hessian against the prediction, as an image")
    plot.add_argument("losses", nargs="+", metavar="NAME|FILE.toml")
    plot.add_argument("-o", "--output", required=True, metavar="FILE.png", help="image file (.png, .svg, .pdf, ...)")
    plot.add_argument("--target", type=float, metavar="Y", help="value of the target input (default: from its domain)")
    plot.add_argument("--range", type=float, nargs=2, metavar=("LO", "HI"), help="prediction range (default: around the target)")
    plot.add_argument("--param", action="append", metavar="NAME=VALUE", help="a parameter value (repeatable)")
    plot.add_argument("--points", type=_count(3, 1_000_000, "points"), default=801, help="grid points (default 801)")
    plot.set_defaults(run=cmd_plot)
    return parser


def main(argv=None) -> int:
    """Entry point of the `lossgen` command; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except (UsageError, LossgenError) as exc:
        message = " ".join(str(exc).split())
        print(message if message.startswith("lossgen") else f"lossgen: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lossgen: interrupted", file=sys.stderr)
        return 2
    except OSError as exc:
        # A path the user gave cannot be written or read (an -o that is a file, no permission).
        name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        message = f"lossgen: cannot use{name}: {exc.strerror or type(exc).__name__}"
        print(" ".join(message.split()), file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the command line never shows a traceback
        if os.environ.get("LOSSGEN_DEBUG"):
            raise
        print(f"lossgen: internal error ({type(exc).__name__}: {' '.join(str(exc).split())}); set LOSSGEN_DEBUG=1 for details", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
