"""Zaremba et al. (2014) small config (preset ptb-lstm-small): 2x200 LSTM, T = 20,
B = 20, 13 epochs, lr x0.5 per epoch after epoch 4, clip 5, init U(+-0.1), no
dropout, untied. Published test perplexity 114.5.

Their loss is summed over the T steps and averaged over the batch; ours is the mean
over B*T tokens, so their lr 1 is our lr T = 20 and their clip 5 our clip 5/T = 0.25."""
import sys

from jax_rnnlm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--preset", "ptb-lstm-small", "--workdir", "runs/ptb_lstm_small"]
                  + sys.argv[1:]))
