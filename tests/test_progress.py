"""The training progress display: stderr only, fits the terminal, shows the figures given."""
import io
import re
import sys

import pytest
from rich.console import Console

from jax_rnnlm import progress
from jax_rnnlm.progress import ProgressBar, fit_line, format_duration, format_value

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FIELDS = dict(epoch=3, loss=4.60312, ppl=99.51234, lr=0.0012345, tok_s=11450.3)


def terminal(width):
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)


def live_output(width, step=12, total=1500, **fields):
    console = terminal(width)
    bar = ProgressBar(total, 0, live=True, console=console)
    bar.update(step, log_point=False, **(fields or FIELDS))
    bar.close()
    text = ANSI.sub("", console.file.getvalue()).replace("\r", "\n")
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("width", [80, 120])
def test_the_live_line_fits_the_terminal_and_keeps_steps_loss_ppl_rate_and_eta(width):
    lines = live_output(width)
    last = lines[-1]
    assert all(len(line) <= width for line in lines), lines
    for part in ("12/1500", "loss 4.603", "ppl 99.51", "tok_s 11,450", "eta "):
        assert part in last, (part, last)
    assert "…" not in last  # nothing cut short: parts that do not fit are left out whole
    if width >= 120:  # room for everything
        assert "lr 0.001234" in last and "ep 3" in last and "━" in last


def test_a_narrow_terminal_drops_the_least_useful_parts_first():
    parts = progress.line_parts(123456, 1500000, FIELDS, eta="0:20:13", elapsed="1:02:03")
    names, bar = fit_line(parts, 80)
    assert {"steps", "eta", "loss", "ppl", "tok_s"} <= set(names)
    assert "elapsed" not in names and "lr" not in names
    assert names.index("steps") < names.index("loss") < names.index("eta")
    names, bar = fit_line(parts, 200)
    assert {"bar", "epoch", "lr", "elapsed"} <= set(names) and bar == progress.BAR_MAX
    names, _ = fit_line(parts, 30)  # very narrow: the step count and eta first
    assert names[:1] == ["steps"] and "eta" in names and "tok_s" not in names


def test_the_live_line_shows_the_loss_it_is_given_without_smoothing():
    console = terminal(120)
    bar = ProgressBar(100, 0, live=True, console=console)
    bar.update(10, log_point=True, loss=5.0, ppl=148.4)
    bar.update(20, log_point=True, loss=1.0, ppl=2.718)
    bar.close()
    last = ANSI.sub("", console.file.getvalue()).replace("\r", "\n").strip().splitlines()[-1]
    assert "loss 1  " in last and "ppl 2.718" in last


def test_plain_lines_show_the_loss_as_given_at_log_points_only():
    lines = []
    bar = ProgressBar(100, 0, echo=lines.append, live=False)
    bar.update(5, log_point=False, loss=9.0, ppl=8103.1)
    bar.update(10, log_point=True, loss=4.60312, ppl=99.51234, tok_s=None)
    bar.close()
    assert len(lines) == 1
    assert lines[0].startswith("step 10/100  loss 4.603  ppl 99.51  tok_s -  eta ")


def test_the_live_bar_writes_to_stderr_and_nothing_to_stdout(capsys):
    bar = ProgressBar(50, 0, live=True)  # the default console
    print("result")  # what the caller prints to stdout while the bar is up stays there
    bar.update(7, log_point=True, **FIELDS)
    bar.close()
    out, err = capsys.readouterr()
    assert out == "result\n"
    assert "7/50" in err


def test_live_is_decided_by_stderr_being_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert ProgressBar(10, live=None).live is False


def test_formatting():
    assert [format_value(v) for v in (11450.3, 4.6031, 0.001, 7, None)] == [
        "11,450", "4.603", "0.001", "7", "-"]
    assert [format_duration(s) for s in (None, 0, 61.4, 3 * 86400 + 5)] == [
        "?", "0:00:00", "0:01:01", "72:00:05"]
