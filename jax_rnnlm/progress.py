"""Training progress: a live bar on a terminal, plain periodic lines elsewhere (CI, nohup).

Progress goes to stderr, always: stdout carries the results alone, so
``jax-rnnlm train ... > result.json`` keeps the bar on the screen and out of the file.
"""
import sys
import time

from rich.cells import cell_len
from rich.console import Console
from rich.live import Live
from rich.text import Text

# The parts of the live line. Where the terminal is too narrow for all of them the
# least useful go first: a part is kept only if every part with a lower rank fits.
# (rank, position on the line); fields the caller passes that are not named here
# rank after the named ones.
_STEPS, _ETA, _BAR, _ELAPSED = "steps", "eta", "bar", "elapsed"
_PARTS = {_STEPS: (0, 1), _ETA: (1, 9), "loss": (2, 3), "ppl": (3, 4), "tok_s": (4, 6),
          _BAR: (5, 0), "epoch": (6, 2), "lr": (7, 5), _ELAPSED: (8, 8)}
_OTHER = (9, 7)
_SEP = "  "
BAR_MIN, BAR_MAX = 10, 40


def format_value(value):
    """A figure for a progress line: 11,450 (not 1.145e+04), 4.603, 0.001, or '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def format_duration(seconds):
    """H:MM:SS, hours not wrapping at a day (26:03:00), or '?' for no estimate."""
    if seconds is None:
        return "?"
    s = max(int(round(seconds)), 0)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def line_parts(step, total, fields, *, eta, elapsed):
    """{name: text} of everything the live line can show; the bar is sized later."""
    parts = {_STEPS: f"{step}/{total}", _ETA: f"eta {eta}", _ELAPSED: f"elapsed {elapsed}"}
    for name, value in fields.items():
        parts[name] = f"{'ep' if name == 'epoch' else name} {format_value(value)}"
    return parts


def fit_line(parts, width):
    """(names of the parts to show, in line order, bar width or 0) for ``width`` columns:
    the parts by rank while they fit (the bar counting ``BAR_MIN``), then the bar
    widened into what is left, up to ``BAR_MAX``. The step count is always kept."""
    ranked = sorted([*parts, _BAR], key=lambda n: _PARTS.get(n, _OTHER))
    size = lambda n: BAR_MIN if n == _BAR else cell_len(parts[n])  # noqa: E731
    kept, used = [], 0
    for name in ranked:
        need = size(name) + (len(_SEP) if kept else 0)
        if not kept or used + need <= width:
            kept.append(name)
            used += need
    bar = 0
    if _BAR in kept:
        bar = min(BAR_MAX, BAR_MIN + width - used)
    return sorted(kept, key=lambda n: _PARTS.get(n, _OTHER)[1]), bar


class _Line:
    """The live line, laid out afresh for the console's width at each refresh."""

    def __init__(self, progress):
        self.progress = progress

    def __rich_console__(self, console, options):
        p = self.progress
        step, fields = p.state
        parts = line_parts(step, p.total, fields, eta=p.eta(step),
                           elapsed=format_duration(time.perf_counter() - p.t0))
        names, bar_width = fit_line(parts, options.max_width)
        line = Text(no_wrap=True, overflow="ellipsis")
        for i, name in enumerate(names):
            if i:
                line.append(_SEP)
            if name == _BAR:
                done = round(bar_width * min(step / p.total, 1.0)) if p.total else bar_width
                line.append("━" * done, style="bar.complete")
                line.append("━" * (bar_width - done), style="bar.back")
            else:
                style = {_STEPS: "progress.download", _ETA: "progress.remaining",
                         _ELAPSED: "progress.elapsed"}.get(name)
                line.append(parts[name], style=style)
        yield line


class ProgressBar:
    """Shows step / total, epoch, loss, ppl, lr, tokens/s and the time left, on stderr.

    ``update`` shows the fields it is given as they are, rounded to four
    significant figures (``format_value``) and nothing else: no smoothing. The
    caller passes ``loss`` (and ``ppl`` = exp(loss)) as the mean over the current
    log interval, the figure metrics.jsonl logs as ``train_loss``/``train_ppl``.

    ``live`` (None: whether stderr is a terminal) picks a live line redrawn in
    place, laid out to fit the terminal's width (the step count, eta, loss, ppl
    and tokens/s are kept; the bar, epoch, lr and elapsed time give way first),
    or else one plain line through ``echo`` at each log point. ``console`` is
    where the live line is drawn (a rich Console on stderr by default).
    """

    def __init__(self, total_steps, first_step=0, *, echo=print, live=None, console=None):
        self.total, self.echo = total_steps, echo
        self.live = sys.stderr.isatty() if live is None else live
        self.t0, self.step0 = time.perf_counter(), first_step
        self.first = None  # (time, step) of the first update: the rate is timed from it
        self.state = (first_step, {})
        if self.live:
            self.console = console if console is not None else Console(stderr=True)
            # stdout is left alone (it carries the results); lines printed to stderr
            # while the bar is up (echo) appear above it
            self.display = Live(_Line(self), console=self.console, refresh_per_second=4,
                                transient=False, redirect_stdout=False, redirect_stderr=True)
            self.display.start()

    def update(self, step, *, log_point, **fields):
        if self.first is None:
            self.first = (time.perf_counter(), step)
        self.state = (step, fields)
        if self.live:
            self.display.refresh()
        elif log_point:
            info = _SEP.join(f"{k} {format_value(v)}" for k, v in fields.items())
            self.echo(f"step {step}/{self.total}  {info}  eta {self.eta(step)}")

    def eta(self, step):
        """The time left at the rate since the first update (the first call, which
        compiles, does not count once a second has come), as H:MM:SS, or '?'."""
        t_start, s_start = self.t0, self.step0
        if self.first is not None and step > self.first[1]:
            t_start, s_start = self.first
        done = step - s_start
        if done <= 0:
            return "?"
        return format_duration((time.perf_counter() - t_start) / done * (self.total - step))

    def close(self):
        if self.live:
            self.display.stop()
