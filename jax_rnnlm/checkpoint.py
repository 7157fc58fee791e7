"""What a run leaves in its workdir, and how to read it back.

    config.json    model, train and data settings of the run
    vocab.json     id -> token list of the train split
    checkpoints/   orbax CheckpointManager steps holding the full TrainState
    metrics.jsonl  one JSON line per log point (written by train.fit)
"""
import dataclasses
import json
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jax_rnnlm import data
from jax_rnnlm.model import ModelConfig


def write_run_info(workdir, model_cfg, train_cfg, corpus: data.Corpus, level):
    workdir = Path(workdir)
    info = {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg),
            "data": {"source": corpus.source, "level": level,
                     "vocab_size": len(corpus.vocab)}}
    (workdir / "config.json").write_text(json.dumps(info, indent=2) + "\n")
    (workdir / "vocab.json").write_text(json.dumps(list(corpus.vocab.words)) + "\n")


def read_run_info(workdir):
    """(ModelConfig, train settings dict, data settings dict, Vocab) of a workdir."""
    workdir = Path(workdir)
    path = workdir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{workdir}: no config.json; is this a jax-rnnlm workdir?")
    info = json.loads(path.read_text())
    vocab = data.Vocab(tuple(json.loads((workdir / "vocab.json").read_text())))
    return ModelConfig(**info["model"]), info["train"], info["data"], vocab


def _manager(workdir, max_to_keep=2):
    return ocp.CheckpointManager(Path(workdir).absolute() / "checkpoints",
                                 options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))


def save_state(workdir, state):
    """Save the full TrainState under its step number (blocks until written)."""
    with _manager(workdir) as mngr:
        mngr.save(int(state.step), args=ocp.args.StandardSave(state))
        mngr.wait_until_finished()


def restore_state(workdir, template):
    """The newest TrainState, restored into the structure and dtypes of ``template``."""
    with _manager(workdir) as mngr:
        step = mngr.latest_step()
        if step is None:
            raise FileNotFoundError(f"{workdir}: no checkpoint saved yet")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        return mngr.restore(step, args=ocp.args.StandardRestore(abstract))
