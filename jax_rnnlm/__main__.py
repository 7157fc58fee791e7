import sys

from jax_rnnlm.cli import main

sys.exit(main())
