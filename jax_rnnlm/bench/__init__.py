"""Side-by-side throughput: jax_rnnlm, the same model in Flax's recurrent modules, PyTorch.

    jax-rnnlm bench [--json bench.json]        # or: python experiments/bench.py
    jax-rnnlm bench --quick                    # tiny config, seconds; the smoke test

For each PTB-shaped config (V = 10,000, B = 20) every peer trains and evaluates
on the same real PTB windows. Each peer runs in its own worker process (its own
thread pools, its own peak-memory count); the coordinator interleaves them, one
timed chunk each in turn (A B C A B C ..., the order rotating every round), so
whatever else loads the machine slows every peer alike, and reports medians. A
matmul worker joins every round, so the roofline and MFU are measured under the
same load.

Peers: ``jax_rnnlm`` (float32), ``jax_rnnlm-bf16`` (bf16 matmul operands, fp32
accumulation, fp32 params/loss/optimizer), ``flax`` (flax.linen.RNN with
SimpleCell/LSTMCell/GRUCell, same harness: W windows per jitted call, donated
state) and ``torch`` (nn.Embedding + nn.RNN/LSTM/GRU + nn.Linear + cross_entropy,
eager, when torch is importable). All train with clip-by-global-norm + SGD.

Model FLOPs per token count the matmuls only: forward 2·(D·G·H + H·G·H) per
layer + 2·H·V for the output layer; training is 3x forward.

Modules: ``cli`` (flags, corpus, the run), ``harness`` (configs, worker
processes, interleaved rounds), ``peers`` (the implementations, built inside
the workers), ``profile`` (per-part trace of a train window), ``report``
(ratios, targets, tables, machine description).
"""
from jax_rnnlm.bench.cli import main

__all__ = ["main"]
