"""The seed's model, a tanh RNN, tuned to beat the classic RNNLM's test perplexity
124.7 (Mikolov): one 400-wide layer, tied embedding/output weights, dropout 0.3 on
the non-recurrent connections, SGD lr 20 halved each epoch after the 4th and
divided by 4 when validation perplexity does not improve, clip 0.25, 8 epochs
(preset ptb-rnn)."""
import sys

from jax_rnnlm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--preset", "ptb-rnn", "--workdir", "runs/ptb_rnn"] + sys.argv[1:]))
