"""Run with 4 host devices (XLA_FLAGS): the train and eval programs ``jax-rnnlm compile``
builds for cpu:4 against those a real 4-device run builds (``train.place_run`` and
``parallel.sharded_evaluate``'s placement), for a plain run and for one with DNI and
variable window lengths. Prints one JSON line of comparisons per run."""
import dataclasses
import json
import sys

import jax.numpy as jnp

from jax_rnnlm import aot, data, model, optim, parallel, step, train
from jax_rnnlm.config import ModelConfig, TrainConfig


def compare(corpus, cfg):
    m = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=8, hidden_dim=8, num_layers=2,
                    cell="lstm", dropout=0.2)
    state, streams, place, run_windows, _ = train.place_run(m, cfg, corpus,
                                                            optim.from_config(cfg))
    W = cfg.windows_per_call
    T = train.longest_window(cfg)
    starts = jnp.arange(W, dtype=jnp.int32) * T
    real = run_windows(T).lower(state, place(streams[:, :W * T + 1]), starts)
    mesh = parallel.make_mesh(4)
    fn, args, _ = aot.train_program(m, cfg, mesh, T)
    ours = fn.lower(*args)
    real_c, ours_c = real.compile(), ours.compile()
    # evaluation: the arrays parallel.sharded_evaluate places, into step.eval_windows
    params = parallel.place_tree(state.params, parallel.replicated(mesh))
    sharding = parallel.eval_sharding(mesh, cfg.eval_batch_size)
    ev_streams = parallel.place(data.batchify(corpus.valid, cfg.eval_batch_size), sharding)
    carry = parallel.place_tree(model.init_carry(m, cfg.eval_batch_size), sharding)
    efn, eargs, eW = aot.eval_program(m, len(corpus.valid), cfg.eval_batch_size, cfg.bptt,
                                      mesh)
    ev_real = step.eval_windows.lower(params, m, carry, ev_streams,
                                      jnp.arange(eW, dtype=jnp.int32) * cfg.bptt, cfg.bptt)
    return {
        "same_train_text": real.as_text() == ours.as_text(),
        "same_train_in_shardings": str(real_c.input_shardings) == str(ours_c.input_shardings),
        "same_train_out_shardings": str(real_c.output_shardings) == str(ours_c.output_shardings),
        "carry_split": "spec=P('batch',)" in str(ours_c.input_shardings),
        "same_eval_text": ev_real.as_text() == efn.lower(*eargs).as_text(),
    }


def main(corpus_dir):
    corpus = data.load_corpus(corpus_dir)
    cfg = TrainConfig(batch_size=8, bptt=5, windows_per_call=3, eval_batch_size=4, devices=4)
    dni = dataclasses.replace(cfg, bptt=6, variable_bptt=True, synthetic_gradients="linear")
    print(json.dumps({"plain": compare(corpus, cfg), "dni_variable_bptt": compare(corpus, dni)}))


if __name__ == "__main__":
    main(sys.argv[1])
