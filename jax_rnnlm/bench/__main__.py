"""``python -m jax_rnnlm.bench``: the same as ``jax-rnnlm bench``."""
import sys

from jax_rnnlm.bench import main

sys.exit(main())
