"""Training progress: a live bar on a terminal, plain periodic lines elsewhere (CI, nohup)."""
import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.progress import TimeElapsedColumn, TimeRemainingColumn


def format_value(value):
    """A figure for a progress line: 11,450 (not 1.145e+04), 4.603, 0.001, or '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


class ProgressBar:
    """Shows step / total, epoch, loss, ppl, lr, tokens/s and the time left."""

    def __init__(self, total_steps, first_step=0, *, echo=print, live=None):
        self.total, self.echo = total_steps, echo
        self.live = sys.stderr.isatty() if live is None else live
        self.t0, self.step0 = time.perf_counter(), first_step
        if self.live:
            self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                TextColumn("eta"), TimeRemainingColumn(), transient=False)
            self.task = self.bar.add_task("train", total=total_steps, completed=first_step,
                                          info="")
            self.bar.start()

    def update(self, step, *, log_point, **fields):
        info = "  ".join(f"{k} {format_value(v)}" for k, v in fields.items())
        if self.live:
            self.bar.update(self.task, completed=step, info=info)
        elif log_point:
            self.echo(f"step {step}/{self.total}  {info}  eta {self.eta(step)}")

    def eta(self, step):
        done = step - self.step0
        if done <= 0:
            return "?"
        left = (time.perf_counter() - self.t0) / done * (self.total - step)
        return time.strftime("%H:%M:%S", time.gmtime(left))

    def close(self):
        if self.live:
            self.bar.stop()
