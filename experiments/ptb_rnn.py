"""The seed's model, a tanh RNN, tuned to beat the classic RNNLM's test perplexity
124.7 (Mikolov): one 400-wide layer, tied embedding/output weights, dropout 0.3 on
the non-recurrent connections, SGD lr 20 divided by 4 whenever validation
perplexity does not improve (the PyTorch example's rule), clip 0.25, 12 epochs."""
import sys

from jax_rnnlm.cli import main

ARGS = ["train", "--data", "ptb", "--workdir", "runs/ptb_rnn", "--cell", "rnn",
        "--num-layers", "1", "--embed-dim", "400", "--hidden-dim", "400", "--tie-weights",
        "--dropout", "0.3", "--batch-size", "20", "--bptt", "35", "--optimizer", "sgd",
        "--lr", "20", "--clip", "0.25", "--plateau-factor", "0.25", "--epochs", "12"]

if __name__ == "__main__":
    sys.exit(main(ARGS + sys.argv[1:]))
