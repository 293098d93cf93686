"""Plots: loss, gradient and Hessian panels with kinks marked, from Python and `lossgen plot`."""

import shlex
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib.image  # noqa: E402

import lossgen as lg  # noqa: E402
from lossgen.cli import main  # noqa: E402
from lossgen.plot import find_kinks, plot_losses  # noqa: E402

REGRESSION = ["squared_error", "absolute_error", "huber", "log_cosh"]


def _kinks(figure, name):
    """The x positions marked as kinks of `name` on the loss panel."""
    marks = [line for line in figure.axes[0].lines if line.get_gid() == f"kinks:{name}"]
    return [] if not marks else sorted(float(x) for x in marks[0].get_xdata())


def _png_checks(path):
    assert path.stat().st_size > 20_000
    image = matplotlib.image.imread(path)
    colors = np.unique((image[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colors) > 50  # four curves, antialiased, on white: far more than a blank image


def test_several_losses_on_one_figure(tmp_path):
    figure = plot_losses(REGRESSION)
    assert len(figure.axes) == 3
    loss_panel, grad_panel, hess_panel = figure.axes
    assert [a.get_title() for a in figure.axes] == ["loss", "gradient d/dp", "Hessian d²/dp²"]
    for axis in figure.axes:
        curves = [line for line in axis.lines if str(line.get_gid()).startswith("curve:")]
        assert [c.get_label() for c in curves] == REGRESSION
        assert all(len(c.get_xdata()) == 801 for c in curves)
    labels = [t.get_text() for t in loss_panel.get_legend().get_texts()]
    assert labels == REGRESSION + ["kink"]
    # Defaults: the target y = 0 (real line), the prediction from -3 to 3.
    squared = next(c for c in loss_panel.lines if c.get_gid() == "curve:squared_error")
    x, values = squared.get_data()
    assert (x[0], x[-1]) == (-3.0, 3.0) and np.allclose(values, x**2)
    assert figure.get_suptitle() == "y = 0"
    # Kinks: where the gradient jumps (absolute_error) or the Hessian does (huber).
    assert _kinks(figure, "absolute_error") == [0.0]
    assert _kinks(figure, "huber") == [-1.0, 1.0]
    assert _kinks(figure, "squared_error") == [] and _kinks(figure, "log_cosh") == []
    lines = [line for line in grad_panel.lines if line.get_gid() == "kink-line:huber"]
    assert sorted(line.get_xdata()[0] for line in lines) == [-1.0, 1.0]
    path = tmp_path / "losses.png"
    figure.savefig(path)
    _png_checks(path)


def test_loss_plot_params_target_range_and_axes():
    huber = lg.get("huber")
    figure = huber.plot(delta=2.0, x_range=(-4, 4))
    assert _kinks(figure, "huber") == [-2.0, 2.0]
    assert _kinks(huber.plot(params={"delta": 0.5}), "huber") == [-0.5, 0.5]
    shifted = huber.plot(target=1.0)
    assert _kinks(shifted, "huber") == [0.0, 2.0]
    curve = next(c for c in shifted.axes[0].lines if c.get_gid() == "curve:huber")
    assert (curve.get_xdata()[0], curve.get_xdata()[-1]) == (-2.0, 4.0)  # centred on the target
    # One Axes: the loss only; three Axes: all panels, on the caller's figure.
    from matplotlib.figure import Figure

    mine = Figure()
    single = mine.subplots()
    assert lg.get("hinge").plot(ax=single) is mine
    assert [line.get_gid() for line in single.lines] == ["curve:hinge", "kinks:hinge"]
    three = Figure().subplots(1, 3)
    figure = plot_losses(["quantile"], ax=three, tau=0.2)
    assert all(len(axis.lines) >= 1 for axis in three) and _kinks(figure, "quantile") == [0.0]


def test_defaults_follow_the_domains():
    figure = plot_losses(["bce", "hinge", "epsilon_insensitive"])
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    # Labels in [0, 1] or [-1, 1] default to the positive class; a real target to 0.
    assert labels[:3] == ["bce (y = 1)", "hinge (y = 1)", "epsilon_insensitive (y = 0)"]
    bce = next(c for c in figure.axes[0].lines if c.get_gid() == "curve:bce")
    x, values = bce.get_data()
    inside = (x > 0) & (x < 1)
    assert np.isnan(values[~inside]).all() and np.isfinite(values[inside]).all()
    assert _kinks(figure, "hinge") == [1.0]
    assert _kinks(figure, "epsilon_insensitive") == [-0.1, 0.1]
    assert _kinks(plot_losses("bce"), "bce") == []  # alone: p over (0, 1), smooth


def test_find_kinks_rejects_steep_smooth_curves():
    steep = lg.Loss("steep", "log(cosh(200*(p - y)))/200", inputs=["y", "p"], wrt="p")
    figure = steep.plot(points=101)
    assert _kinks(figure, "steep") == []  # the gradient turns within one grid step, but smoothly
    kernel = lg.get("absolute_error").compile(reduction="none")

    def evaluate(x):
        result = kernel(np.full(x.shape, 0.25), x)
        return result.loss, result.grad, result.hess

    assert find_kinks(evaluate, np.linspace(-1, 1, 41)) == [0.25]  # 0.25 lies on the grid


def test_plot_errors():
    cases = [
        (lambda: plot_losses(["huber"], delat=1.0), "no plotted loss has a param 'delat'"),
        (lambda: plot_losses(["huber"], x_range=(2, 1)), "x_range must be finite with low < high"),
        (lambda: plot_losses(["cross_entropy"]), "row-wise"),
        (lambda: plot_losses(["huber"], ax="left"), "ax must be one matplotlib Axes"),
        (lambda: plot_losses(["huber"], target={"z": 1.0}), "not an input of 'huber'"),
        (lambda: plot_losses(["huber"], points=2), "points must be an integer"),
        (lambda: plot_losses([]), "no loss to plot"),
    ]
    for call, message in cases:
        with pytest.raises(lg.InputError) as info:
            call()
        assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(lg.SpecError, match="unknown loss"):
        plot_losses(["no_such_loss"])


def test_cli_plot_writes_a_png(tmp_path, capsys):
    path = tmp_path / "out.png"
    code = main(["plot", "squared_error", "huber", "-o", str(path), "--range", "-4", "4", "--param", "delta=2", "--target", "0.5"])
    assert code == 0
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    _png_checks(path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["plot", "no_such_loss", "-o", "{dir}/x.png"], "unknown loss 'no_such_loss'"),
        (["plot", "huber", "-o", "{dir}/x.notaformat"], "the suffix must be one of"),
        (["plot", "huber", "-o", "{dir}/x.png", "--param", "delta"], "--param takes NAME=VALUE"),
        (["plot", "huber", "-o", "{dir}/x.png", "--param", "gamma=2"], "no plotted loss has a param 'gamma'"),
        (["plot", "huber", "-o", "{dir}/x.png", "--range", "3", "-3"], "x_range must be finite with low < high"),
        (["plot", "huber", "-o", "{dir}/x.png", "--target", "nan"], "must be a finite number"),
        (["plot", "huber"], "the following arguments are required: -o/--output"),
        (["plot", "huber", "-o", "{dir}/no/such/dir/x.png"], "cannot use"),
    ],
)
def test_cli_plot_bad_input(tmp_path, capsys, argv, message):
    argv = [a.replace("{dir}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_cli_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import matplotlib.figure fails
    assert main(["plot", "huber", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "lossgen plot needs matplotlib: pip install 'lossgen[plot]'"


def test_import_lossgen_imports_no_matplotlib():
    code = "import sys, lossgen; lossgen.get('huber').compile(reduction='none'); print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


README_SNIPPET = """\
import lossgen as lg
from lossgen.plot import plot_losses

fig = lg.get("huber").plot(delta=1.5)    # loss, gradient and Hessian panels; kinks at p = -1.5, 1.5 marked
fig = plot_losses(["squared_error", "absolute_error", "huber", "log_cosh"], x_range=(-3, 3))
fig.savefig("losses.png")
"""

README_COMMAND = "lossgen plot squared_error absolute_error huber log_cosh -o losses.png --range -3 3"


def test_readme_snippets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(README_SNIPPET, "README-plot", "exec"), {})
    _png_checks(tmp_path / "losses.png")
    (tmp_path / "losses.png").unlink()
    assert main(shlex.split(README_COMMAND)[1:]) == 0
    _png_checks(tmp_path / "losses.png")
