"""The numpy book's Rnnlm (preset book-rnnlm): one LSTM layer, D = H = 100, B = 20,
T = 35, SGD lr 20, clip 0.25, 4 epochs. The book's trained model scores test
perplexity 136.1."""
import sys

from jax_rnnlm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--preset", "book-rnnlm", "--workdir", "runs/book_rnnlm"]
                  + sys.argv[1:]))
