"""A workdir is claimed before it is written, its data recognised by content, its output
strict JSON; the id cache checks its ids; a closed terminal saves like SIGTERM."""
import hashlib
import json
import os
import shutil
import signal

import numpy as np
import pytest

from jax_rnnlm import data, idcache, train, workdir as wd
from jax_rnnlm.config import DataConfig, ModelConfig, TrainConfig

TINY = dict(embed_dim=4, hidden_dim=4)
QUICK = dict(batch_size=2, bptt=4, max_steps=2, eval_batch_size=2, log_every=1)


def snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fit(corpus_dir, run, **train_changes):
    corpus = data.load_corpus(corpus_dir)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), **TINY)
    return train.fit(mcfg, TrainConfig(**{**QUICK, **train_changes}), corpus, run,
                     echo=lambda s: None)


@pytest.mark.parametrize("contents", [{"config.json": '{"lr": 3}', "notes.txt": "mine"},
                                      {"data.csv": "1,2"}])
def test_a_directory_of_another_program_is_refused_and_left_unchanged(tiny_corpus_dir,
                                                                      contents):
    other = tiny_corpus_dir / "other"
    other.mkdir()
    for name, text in contents.items():
        (other / name).write_text(text)
    before = snapshot(other)
    with pytest.raises(wd.WorkdirError, match="is not a jax-rnnlm workdir"):
        fit(tiny_corpus_dir, other)
    assert snapshot(other) == before


def test_a_new_or_empty_directory_is_claimed_with_the_marker(tiny_corpus_dir):
    empty = tiny_corpus_dir / "empty"
    empty.mkdir()
    for run in (empty, tiny_corpus_dir / "new" / "run"):
        fit(tiny_corpus_dir, run)
        assert (run / wd.MARKER).is_file() and (run / wd.CONFIG).is_file()
        assert wd.why_not_ours(run) is None


def test_a_run_of_an_earlier_version_without_the_marker_is_still_ours(tiny_corpus_dir):
    run = tiny_corpus_dir / "run"
    fit(tiny_corpus_dir, run)
    (run / wd.MARKER).unlink()
    assert wd.why_not_ours(run) is None
    fit(tiny_corpus_dir, run, max_steps=3)  # resumes
    assert (run / wd.MARKER).is_file()


def test_a_named_corpus_is_saved_by_name_and_a_path_absolute(tiny_corpus_dir, monkeypatch):
    run = tiny_corpus_dir / "run"
    monkeypatch.chdir(tiny_corpus_dir)
    corpus = data.load_corpus(".")
    assert corpus.source == str(tiny_corpus_dir) and corpus.level == "word"
    train.fit(ModelConfig(vocab_size=len(corpus.vocab), **TINY), TrainConfig(**QUICK), corpus,
              "run", echo=lambda s: None)
    saved = json.loads((run / wd.CONFIG).read_text())["data"]
    assert saved["data"] == str(tiny_corpus_dir)
    assert set(saved["identity"]) == {"train.txt", "valid.txt", "test.txt"}
    assert saved["identity"]["train.txt"] == hashlib.sha256(
        (tiny_corpus_dir / "train.txt").read_bytes()).hexdigest()
    assert data.canonical_source("ptb") == "ptb"
    assert wd.data_config({"source": "../somewhere/ptb", "level": "word"}).data == "ptb"


def test_the_same_text_under_another_path_resumes_and_other_text_is_refused(tiny_corpus_dir):
    run = tiny_corpus_dir / "run"
    fit(tiny_corpus_dir, run)
    moved = tiny_corpus_dir / "moved"
    moved.mkdir()
    for split in data.SPLITS:
        shutil.copy(tiny_corpus_dir / f"{split}.txt", moved / f"{split}.txt")
    assert fit(moved, run, max_steps=3)["steps"] == 3  # resumed from step 2
    with (moved / "valid.txt").open("a") as f:
        f.write("the cat sat\n")
    before = snapshot(run)
    with pytest.raises(wd.WorkdirError, match="data: the checkpoint's text"):
        fit(moved, run, max_steps=4)
    assert snapshot(run) == before


@pytest.mark.parametrize("changes, flag", [(dict(eval_batch_size=50), "--eval-batch-size"),
                                           (dict(test_batch_size=50), "--test-batch-size")])
def test_batch_sizes_too_large_for_a_split_are_refused_before_any_write(tiny_corpus_dir,
                                                                        changes, flag):
    run = tiny_corpus_dir / "run"
    with pytest.raises(data.DataError, match=flag):
        fit(tiny_corpus_dir, run, **changes)
    assert not run.exists()


def test_a_vocabulary_of_one_type_is_refused(tiny_corpus_dir):
    corpus = data.load_corpus(tiny_corpus_dir, min_count=10_000)
    assert corpus.vocab.words == ("<unk>",)
    with pytest.raises(data.DataError, match="lower --min-count"):
        train.check_data(TrainConfig(**QUICK), corpus)


def test_ids_outside_the_vocabulary_in_a_cache_make_it_rebuild(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("a b c\nb c d\n")
    messages = []
    ids, words, _ = idcache.cached_ids(text, "word", cache_dir=tmp_path / "c")
    good = np.array(ids)
    [npy] = (tmp_path / "c").glob("*.npy")
    for bad in (len(words), -1):
        arr = np.load(npy)
        arr[2] = bad
        np.save(npy, arr)
        ids, _, _ = idcache.cached_ids(text, "word", cache_dir=tmp_path / "c",
                                       echo=messages.append)
        np.testing.assert_array_equal(ids, good)
    assert len(messages) == 2 and "ids outside its vocabulary" in messages[0]
    assert str(npy.with_suffix("")) in messages[0]


def test_the_cache_directory_is_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(data.DataError, match="--data-cache .*is a file"):
        idcache.check_cache_dir(tmp_path / "file")
    with pytest.raises(data.DataError, match="--data-cache .*cannot be created"):
        idcache.check_cache_dir(tmp_path / "file" / "sub")
    idcache.check_cache_dir(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir").is_dir()


def test_json_lines_are_strict_and_say_why_a_figure_is_null():
    line = wd.json_line({"ppl": float("inf"), "loss": float("nan"), "tokens": 3})
    record = json.loads(line, parse_constant=lambda c: pytest.fail(c))
    assert record == {"ppl": None, "loss": None, "tokens": 3,
                      "null_reasons": {"ppl": "not finite (inf)", "loss": "not finite (nan)"}}


def test_sighup_is_a_stop_request_unless_it_is_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # whatever this process inherited
    try:
        with train.stop_requests() as stop:
            os.kill(os.getpid(), signal.SIGHUP)
            assert stop == [signal.SIGHUP]
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
        with train.stop_requests() as stop:
            os.kill(os.getpid(), signal.SIGHUP)
            assert stop == []
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_data_settings_are_recorded_and_read_back(tiny_corpus_dir):
    run = tiny_corpus_dir / "run"
    corpus = data.load_corpus(tiny_corpus_dir, min_count=2)
    cfg = DataConfig(data=str(tiny_corpus_dir), min_count=2, data_cache="/tmp/x")
    train.fit(ModelConfig(vocab_size=len(corpus.vocab), **TINY), TrainConfig(**QUICK), corpus,
              run, data_cfg=cfg, echo=lambda s: None)
    _, _, saved, vocab = wd.read_run_info(run)
    assert saved == DataConfig(data=str(tiny_corpus_dir), level="word", min_count=2,
                               data_cache="/tmp/x")
    assert vocab == corpus.vocab
