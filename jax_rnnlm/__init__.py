"""jax_rnnlm: recurrent-network language models in JAX, written as pure functions.

    corpus -> word ids -> embedding [B, T] -> [B, T, D] -> recurrent layers (scan over T)
           -> affine [N, H] @ [H, V] -> softmax with cross-entropy -> perplexity

Shape alphabet, used in every docstring and array name (``h_BTH`` is [B, T, H]):

    B  batch: parallel streams of a language model, or sequences of a task batch
    T  time steps: of a truncated-BPTT window, a padded batch, or a decoded sequence
    S  source time steps of a seq2seq encoder
    D  embedding width
    H  width of a recurrent layer (H' = 2H for a bidirectional one)
    G  gates of a cell: 1 rnn, 4 lstm, 3 gru; cell weights are [D, G·H] and [H, G·H]
    V  vocabulary size
    C  classes of a classifier or tagger
    F  input features per token of a task (word, casing, suffix ids)
    N  rows of a flattened batch, N = B·T
    L  tokens per stream of the truncated-BPTT layout (a split of M tokens -> [B, L])
    M  tokens of a whole split or text
    W  truncated-BPTT windows per compiled call
    K  beam width

The pure core (arrays in, arrays out): ``cells``, ``precision``, ``layers``,
``model``, ``optim``, ``step``, ``dni``, ``adapt``, ``data``, ``generate``; ``config`` declares the settings.
Running a job: ``train`` (the host loop), ``workdir``, ``checkpoint``,
``parallel``, ``progress``, ``plot``, ``cli``. The seed's other RNN uses:
``seqtasks``. The benchmark: ``bench``.
"""
from jax_rnnlm.checkpoint import Trained, load_trained
from jax_rnnlm.config import ModelConfig, TrainConfig
from jax_rnnlm.data import Corpus, Vocab, batchify, load_corpus, windows
from jax_rnnlm.generate import log_prob, sample
from jax_rnnlm.model import forward, init_carry, init_params, loss, token_losses
from jax_rnnlm.optim import make_optimizer
from jax_rnnlm.step import (TrainState, evaluate, init_state, jit_train_windows, train_step,
                            train_windows)
from jax_rnnlm.train import fit

__all__ = ["Corpus", "ModelConfig", "TrainConfig", "TrainState", "Trained", "Vocab",
           "batchify", "evaluate", "fit", "forward", "init_carry", "init_params",
           "init_state", "jit_train_windows", "load_corpus", "load_trained", "log_prob",
           "loss", "make_optimizer", "sample", "token_losses", "train_step", "train_windows",
           "windows"]
