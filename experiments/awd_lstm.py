"""AWD-LSTM on PTB (Merity et al. 2018; preset awd-lstm), meant for a GPU: 3 LSTM
layers of 1150 (the last 400 wide, tied to the 400-wide embedding), T = 70, B = 20,
variational dropout 0.4 (0.25 between layers, 0.4 on the embedding output), embedding
dropout 0.1, weight drop 0.5, AR 2, TAR 1, weight decay 1.2e-6, NT-ASGD at lr 30 with
clip 0.25 (their units are ours: the mean token loss), variable-length BPTT (on a
grid of four lengths, drawn per compiled call, see --variable-bptt), 500 epochs.
Published: valid 60.0, test 57.3 (without fine-tuning: 61.2 / 58.8).

Not reproduced here: AWD's fine-tuning stage.
    python experiments/awd_lstm.py --workdir runs/awd_lstm      # resumable, as every run
    python experiments/awd_lstm.py --workdir /tmp/awd --max-steps 3   # a CPU smoke test
"""
import sys

from jax_rnnlm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--preset", "awd-lstm", "--workdir", "runs/awd_lstm"]
                  + sys.argv[1:]))
