"""Throughput of jax_rnnlm vs Flax's recurrent modules vs PyTorch on PTB-shaped configs.

Same as ``jax-rnnlm bench``; flags: ``python experiments/bench.py --help``. The
recorded run (BENCHMARKS.md): ``python experiments/bench.py --json runs/bench.json``.
"""
import sys

from jax_rnnlm.bench import main

if __name__ == "__main__":
    sys.exit(main())
