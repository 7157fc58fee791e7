"""Learning curves from metrics.jsonl: perplexity against steps and wall time, and lr."""
from pathlib import Path

from jax_rnnlm.workdir import METRICS, WorkdirError, read_metrics


def cumulative_wall(rows):
    """The records with ``wall_s`` summed over a run's resumed parts: each process
    counts wall time from its own start, so a drop marks a resume, and the time of
    the part before it (its last record) is added to every later record."""
    out, offset, last = [], 0.0, 0.0
    for r in rows:
        if "wall_s" in r:
            if r["wall_s"] < last:
                offset += last
            last = r["wall_s"]
            r = {**r, "wall_s": r["wall_s"] + offset}
        out.append(r)
    return out


def _step(record):
    """The step of a record: ``step``, or ``steps`` in the summary line train writes last."""
    return record.get("step", record.get("steps"))


def run_series(rows, x="step"):
    """The points to draw for one run, ``{"train": [(x, train_ppl)], "valid": [(x, val_ppl)],
    "lr": [(x, lr)]}``, with ``x`` the ``step`` or the (cumulative) ``wall_s``.

    The validation points are the epoch ends' and the summary line's (the last record,
    with ``test_ppl`` and ``steps``), which holds the only validation of a run stopped
    by ``--max-steps``; where an epoch end already logged the same step (a run that
    ran all its epochs) the summary repeats it and is not drawn twice. Records with
    no figure (null: not finite) are left out."""
    train, valid, lr = [], [], []
    valid_steps = set()
    for r in cumulative_wall(rows):
        pos = _step(r) if x == "step" else r.get(x)
        if pos is None:
            continue
        if r.get("train_ppl") is not None:
            train.append((pos, r["train_ppl"]))
            if r.get("lr") is not None:
                lr.append((pos, r["lr"]))
        if r.get("val_ppl") is None:
            continue
        if "test_ppl" in r:  # the summary line
            if _step(r) in valid_steps:
                continue
        else:
            valid_steps.add(_step(r))
        valid.append((pos, r["val_ppl"]))
    return {"train": train, "valid": valid, "lr": lr}


def check_out(out):
    """Refuse, before any work, a file that cannot be written as a PNG: ``out`` must
    end in .png and its folder exist."""
    out = Path(out)
    parent = out.parent
    if out.suffix.lower() != ".png":
        raise ValueError(f"{out}: the curves are written as PNG; give --out a name "
                         f"ending in .png")
    if not parent.exists():
        raise ValueError(f"{out}: folder {parent} does not exist; create it or choose "
                         f"another --out")
    if not parent.is_dir():
        raise ValueError(f"{out}: {parent} is not a folder; choose another --out")
    if out.is_dir():
        raise ValueError(f"{out} is a folder; give --out a file name ending in .png")


def read_run(workdir):
    """The records of a workdir's metrics.jsonl, or a one-line WorkdirError where it
    has none or holds nothing to draw."""
    try:
        rows = read_metrics(workdir)
    except ValueError as e:  # a line that is not JSON
        raise WorkdirError(f"{Path(workdir) / METRICS}: unreadable ({e})") from None
    if not rows:
        raise WorkdirError(f"{workdir}: {METRICS} is empty; the run has logged nothing "
                           f"yet")
    series = run_series(rows)
    if not series["train"] and not series["valid"]:
        raise WorkdirError(f"{workdir}: {METRICS} holds no perplexity to plot yet")
    return rows


def learning_curves(workdirs, out):
    """Write a PNG with train/val perplexity vs step and vs wall time, and lr vs step.

    ``out`` must end in .png and its folder exist (ValueError); each workdir must
    have a metrics.jsonl with something to draw (WorkdirError). Every point has a
    marker, so a run with a single log point shows."""
    check_out(out)
    runs = [(Path(workdir).name, read_run(workdir)) for workdir in workdirs]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # an optional dependency: only this command needs it
        raise ValueError("plotting needs matplotlib: pip install 'jax_rnnlm[plot]'") from None
    fig, (by_step, by_time, lr) = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, (name, rows) in enumerate(runs):
        color = f"C{i}"
        for ax, x in ((by_step, "step"), (by_time, "wall_s")):
            series = run_series(rows, x)
            _draw(ax, series["train"], ".-", color=color, alpha=0.5, markersize=3,
                  label=f"{name} train")
            _draw(ax, series["valid"], "o-", color=color, label=f"{name} valid")
        _draw(lr, run_series(rows)["lr"], ".-", color=color, markersize=3, label=name)
    for ax, xlabel, ylabel in ((by_step, "train step", "perplexity"),
                               (by_time, "wall time [s]", "perplexity"),
                               (lr, "train step", "learning rate")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return fig


def _draw(ax, points, fmt, **style):
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], fmt, **style)
