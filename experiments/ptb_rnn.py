"""The seed's model, a tanh RNN, tuned to beat the classic RNNLM's test perplexity
124.7 (Mikolov) on a 2-core CPU budget (preset ptb-rnn): one 300-wide layer, tied
embedding/output weights, dropout 0.3 on the non-recurrent connections, Adam lr
2e-3 halved each epoch after the 5th and whenever validation perplexity does not
improve, clip 0.25, 10 epochs. (SGD at lr 20, as for the LSTMs, diverged for this
model.)"""
import sys

from jax_rnnlm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--preset", "ptb-rnn", "--workdir", "runs/ptb_rnn"] + sys.argv[1:]))
