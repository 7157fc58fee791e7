"""Learning curves: what is drawn for a run, and one-line errors for what cannot be."""
import pytest

from jax_rnnlm import plot
from jax_rnnlm.workdir import WorkdirError, json_line


def train(step, ppl, wall, lr=1.0):
    return dict(step=step, epoch=1, train_loss=0.0, train_ppl=ppl, lr=lr, tokens_per_s=100.0,
                skipped=0, wall_s=wall)


def val(step, ppl, wall, epoch=1):
    return dict(step=step, epoch=epoch, val_ppl=ppl, lr=1.0, averaging=False, wall_s=wall)


def summary(steps, val_ppl, wall):  # what train.fit writes last
    test_ppl = None if val_ppl is None else val_ppl + 1
    return dict(val_ppl=val_ppl, test_ppl=test_ppl, best_val_ppl=val_ppl, steps=steps,
                skipped=0, tokens_per_s=100.0, wall_s=wall)


def workdir(tmp_path, *records, name="run"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json_line(r) for r in records))
    return folder


def test_a_run_stopped_by_max_steps_draws_its_final_validation():
    rows = [train(5, 50.0, 1.0), train(10, 40.0, 2.0), summary(12, 38.0, 3.5)]
    assert plot.run_series(rows) == {"train": [(5, 50.0), (10, 40.0)], "valid": [(12, 38.0)],
                                     "lr": [(5, 1.0), (10, 1.0)]}
    assert plot.run_series(rows, "wall_s")["valid"] == [(3.5, 38.0)]


def test_a_finished_run_draws_its_last_validation_once():
    rows = [train(5, 50.0, 1.0), val(10, 45.0, 2.0), train(15, 30.0, 3.0),
            val(20, 33.0, 4.0, epoch=2), summary(20, 33.0, 5.0)]
    assert plot.run_series(rows)["valid"] == [(10, 45.0), (20, 33.0)]
    assert plot.run_series(rows, "wall_s")["valid"] == [(2.0, 45.0), (4.0, 33.0)]


def test_a_resumed_run_draws_against_the_summed_wall_time():
    rows = [train(5, 50.0, 4.0), train(10, 40.0, 1.0), summary(10, 39.0, 2.0)]
    series = plot.run_series(rows, "wall_s")
    assert series["train"] == [(4.0, 50.0), (5.0, 40.0)] and series["valid"] == [(6.0, 39.0)]


def test_null_figures_are_left_out():
    rows = [train(5, None, 1.0), train(10, 40.0, 2.0), summary(10, None, 3.0)]
    assert plot.run_series(rows) == {"train": [(10, 40.0)], "valid": [], "lr": [(10, 1.0)]}


def test_the_figure_holds_the_final_validation_and_single_points_show(tmp_path):
    run = workdir(tmp_path, train(5, 50.0, 1.0), summary(8, 38.0, 2.0))
    fig = plot.learning_curves([run], tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    by_step, by_time, lr = fig.axes
    lines = {line.get_label(): line for line in by_step.lines}
    assert list(lines["run valid"].get_xdata()) == [8]
    assert list(lines["run valid"].get_ydata()) == [38.0]
    assert list({l.get_label(): l for l in by_time.lines}["run valid"].get_xdata()) == [2.0]
    assert list(lines["run train"].get_xdata()) == [5]
    for line in (*by_step.lines, *by_time.lines, *lr.lines):  # one point: seen by its marker
        assert line.get_marker() not in (None, "None", "", " ")


def test_a_missing_output_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(plot, "read_run", lambda w: pytest.fail("read before the check"))
    out = tmp_path / "missing" / "c.png"
    with pytest.raises(ValueError) as e:
        plot.learning_curves([tmp_path / "nowhere"], out)
    assert str(e.value) == (f"{out}: folder {tmp_path / 'missing'} does not exist; "
                            f"create it or choose another --out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        plot.learning_curves([tmp_path], tmp_path / "file" / "c.png")


@pytest.mark.parametrize("name", ["curves.svg", "curves"])
def test_the_output_must_be_a_png(tmp_path, name):
    with pytest.raises(ValueError, match=r"ending in \.png"):
        plot.learning_curves([tmp_path], tmp_path / name)


def test_a_workdir_without_metrics_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkdirError, match="no metrics.jsonl") as e:
        plot.learning_curves([tmp_path / "empty"], tmp_path / "c.png")
    assert "\n" not in str(e.value) and str(tmp_path / "empty") in str(e.value)
    run = workdir(tmp_path, name="blank")
    with pytest.raises(WorkdirError) as e:
        plot.learning_curves([run], tmp_path / "c.png")
    assert str(e.value) == f"{run}: metrics.jsonl is empty; the run has logged nothing yet"
    assert not (tmp_path / "c.png").exists()
    run = workdir(tmp_path, dict(step=1, epoch=1, skipped=1), name="nofigures")
    with pytest.raises(WorkdirError, match="no perplexity to plot"):
        plot.learning_curves([run], tmp_path / "c.png")
