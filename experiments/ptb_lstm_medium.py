"""A medium PTB model with the regularisers of AWD-LSTM (preset ptb-lstm-medium-reg):
Zaremba et al.'s medium size and schedule (2x650 LSTM, T = 35, B = 20, lr 1 / clip 5 on
the T-summed loss = our lr 35 / clip 5/35, x0.8 per epoch after 6, 39 epochs) with tied
weights (Press & Wolf), variational dropout 0.5 on the embedding output and the last
layer (0.3 between layers), embedding dropout 0.1, weight drop 0.2 on w_h, AR 2, TAR 1.
Target: test perplexity <= 80 (Zaremba medium: 82.7).

About 3 h of training alone on 2 CPU cores (3.4k tokens/s, AMD EPYC; test 76.31 in
experiments/RESULTS.md): run it in the background with its workdir outside the
repository; a stopped run continues from its last checkpoint when the same command is
run again. Then adapt it at evaluation time (the settings that won on valid there):
    jax-rnnlm eval --workdir WORKDIR --cache 100 200 500 --cache-theta 0.7 1.0 1.5 \
        --cache-lambda 0.05 0.1 0.15
    jax-rnnlm eval --workdir WORKDIR --dynamic rms --bptt 20 --dynamic-lr 1e-3 1.5e-3 2e-3 \
        --dynamic-decay 1e-2 3e-2
"""
import sys

from jax_rnnlm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--preset", "ptb-lstm-medium-reg", "--workdir", "runs/ptb_lstm_medium"]
                  + sys.argv[1:]))
