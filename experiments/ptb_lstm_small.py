"""Zaremba et al. (2014) small config: 2x200 LSTM, T = 20, B = 20, 13 epochs, lr x0.5
per epoch after epoch 4, clip 5, init U(+-0.1), no dropout, untied. Published test
perplexity 114.5.

Their loss is summed over the T steps and averaged over the batch; ours is the mean
over B*T tokens, so their lr 1 is our lr T = 20 and their clip 5 our clip 5/T = 0.25."""
import sys

from jax_rnnlm.cli import main

ARGS = ["train", "--data", "ptb", "--workdir", "runs/ptb_lstm_small", "--cell", "lstm",
        "--num-layers", "2", "--embed-dim", "200", "--hidden-dim", "200",
        "--init-scale", "0.1", "--batch-size", "20", "--bptt", "20", "--optimizer", "sgd",
        "--lr", "20", "--clip", "0.25", "--lr-decay", "0.5", "--decay-after", "4",
        "--epochs", "13"]

if __name__ == "__main__":
    sys.exit(main(ARGS + sys.argv[1:]))
