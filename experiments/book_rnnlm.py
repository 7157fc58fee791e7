"""The numpy book's Rnnlm: one LSTM layer, D = H = 100, B = 20, T = 35, SGD lr 20,
clip 0.25, 4 epochs. The book's trained model scores test perplexity 136.1."""
import sys

from jax_rnnlm.cli import main

ARGS = ["train", "--data", "ptb", "--workdir", "runs/book_rnnlm", "--cell", "lstm",
        "--embed-dim", "100", "--hidden-dim", "100", "--batch-size", "20", "--bptt", "35",
        "--optimizer", "sgd", "--lr", "20", "--clip", "0.25", "--epochs", "4"]

if __name__ == "__main__":
    sys.exit(main(ARGS + sys.argv[1:]))
