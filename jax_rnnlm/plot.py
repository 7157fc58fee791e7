"""Learning curves from metrics.jsonl: perplexity against steps and wall time, and lr."""
from pathlib import Path

from jax_rnnlm.workdir import read_metrics


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


def learning_curves(workdirs, out):
    """Write a PNG with train/val perplexity vs step and vs wall time, and lr vs step."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # an optional dependency: only this command needs it
        raise ValueError("plotting needs matplotlib: pip install 'jax_rnnlm[plot]'") from None
    fig, (by_step, by_time, lr) = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, workdir in enumerate(workdirs):
        rows = cumulative_wall(read_metrics(workdir))
        color, name = f"C{i}", Path(workdir).name
        train = [r for r in rows if "train_ppl" in r]
        val = [r for r in rows if "val_ppl" in r and "test_ppl" not in r]
        for ax, x in ((by_step, "step"), (by_time, "wall_s")):
            ax.plot([r[x] for r in train], [r["train_ppl"] for r in train], color=color,
                    alpha=0.5, label=f"{name} train")
            ax.plot([r[x] for r in val], [r["val_ppl"] for r in val], "o-", color=color,
                    label=f"{name} valid")
        lr.plot([r["step"] for r in train], [r["lr"] for r in train], color=color, label=name)
    for ax, xlabel, ylabel in ((by_step, "train step", "perplexity"),
                               (by_time, "wall time [s]", "perplexity"),
                               (lr, "train step", "learning rate")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
