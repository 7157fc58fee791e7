"""Every setting, declared once (``settings.field``: type, allowed values, default,
help): the model, the training loop, the data, the commands that use a trained
model, and the named presets of the recorded experiments.

The command-line flags, the config-file keys and their checks are made from these
declarations (``settings``); the README's flag table is their help lines. A field
marked ``resumable=True`` may change when a run resumes from its workdir; every
other model, train and data setting must match the checkpoint (``workdir.differences``).
Precedence on the command line: defaults < --preset < --config FILE < flags.
"""
import dataclasses

from jax_rnnlm.cells import CELLS
from jax_rnnlm.precision import DTYPES
from jax_rnnlm.settings import check, field

OPTIMIZERS = ("sgd", "adam", "ntasgd")
SG_KINDS = ("none", "linear", "mlp")
LEVELS = ("word", "char")
SPLITS = ("train", "valid", "test")
DYNAMIC_RULES = ("sgd", "rms")
RATE = dict(at_least=0.0, below=1.0)  # a dropout probability


def check_recurrent(cfg):
    """The checks every recurrent model's config shares (the LM's and the tasks'):
    the cell, the init scale, the matmul precision."""
    if cfg.cell not in CELLS:
        raise ValueError(f"unknown cell {cfg.cell!r}: choose one of {sorted(CELLS)}")
    if not cfg.init_scale > 0.0:
        raise ValueError(f"init_scale must be > 0, got {cfg.init_scale}")
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {cfg.dtype!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = field(help="V, number of word (or character) types", at_least=2)
    embed_dim: int = field(default=200, help="D, width of the word embedding", at_least=1)
    hidden_dim: int = field(default=200, help="H, width of each recurrent layer", at_least=1)
    last_hidden_dim: int = field(
        default=0, at_least=0,
        help="width of the last recurrent layer (0: --hidden-dim); AWD-LSTM sets it to "
             "--embed-dim so the output layer can be tied")
    num_layers: int = field(default=1, help="number of stacked recurrent layers", at_least=1)
    cell: str = field(
        default="lstm", choices=tuple(CELLS),
        help="recurrent cell: rnn (tanh), lstm, gru, or one linear in its state that "
             "trains in parallel over time: mingru, minlstm (Feng et al. 2024), rglru "
             "(Griffin's RG-LRU)")
    time_loop: str = field(
        default="parallel", choices=("parallel", "scan"), resumable=True,
        help="mingru, minlstm, rglru: a window as an associative scan over time (parallel) "
             "or the same math as a sequential scan (scan); the classic cells always scan")
    dropout: float = field(
        default=0.0, **RATE,
        help="dropout on non-recurrent connections, in [0, 1) (Zaremba et al.): the "
             "embedding output, between layers and the last layer's output")
    dropout_input: float | None = field(
        default=None, **RATE,
        help="dropout on the embedding output instead of --dropout (AWD: 0.4)")
    dropout_hidden: float | None = field(
        default=None, **RATE,
        help="dropout between recurrent layers instead of --dropout (AWD: 0.25)")
    variational: bool = field(
        default=False, help="one dropout mask per stream and window, shared by its time steps "
                            "(Gal & Ghahramani's variational / locked dropout)")
    dropout_embed: float = field(
        default=0.0, **RATE,
        help="drop whole words: each type's embedding zeroed with this probability per "
             "window (AWD: 0.1)")
    weight_drop: float = field(
        default=0.0, **RATE,
        help="DropConnect on the recurrent weights w_h, one mask per window (AWD: 0.5)")
    ar: float = field(
        default=0.0, at_least=0.0,
        help="activation regularisation: + ar * mean square of the last layer's dropped-out "
             "output, in training (AWD: 2)")
    tar: float = field(
        default=0.0, at_least=0.0,
        help="temporal activation regularisation: + tar * mean square of the last layer's "
             "h_t - h_{t-1}, in training (AWD: 1)")
    tie_weights: bool = field(
        default=False, help="output weight = embedding transposed (needs embed-dim == hidden-dim)")
    init_scale: float = field(
        default=0.1, above=0.0, help="weights start uniform in [-init-scale, init-scale]")
    softmax: str = field(
        default="full", choices=("full", "adaptive"),
        help="output layer: full, or adaptive (Grave et al. 2017; the vocabulary is then "
             "ordered by frequency)")
    cutoffs: tuple[int, ...] = field(
        default=(), at_least=1,
        help="adaptive softmax: comma-separated word ranks where the head and each tail "
             "cluster end, e.g. 2000,10000")
    div_value: float = field(
        default=4.0, at_least=1.0,
        help="adaptive softmax: tail i projects h to H / div-value^i dimensions")
    dtype: str = field(
        default="float32", choices=DTYPES,
        help="matmul precision: float32, or bfloat16 (bf16 operands, fp32 accumulation; "
             "params, loss and optimizer state stay fp32)")

    def __post_init__(self):
        check(self)
        self._check_softmax()
        if self.weight_drop and CELLS[self.cell].parallel:
            raise ValueError(f"weight_drop is DropConnect on the recurrent weights w_h, which "
                             f"the {self.cell} cell has none of; drop --weight-drop")
        if self.tie_weights and self.embed_dim != self.layer_dims[-1]:
            raise ValueError(f"tie_weights needs embed_dim == the last layer's width, got "
                             f"{self.embed_dim} != {self.layer_dims[-1]}; set them equal "
                             f"(--hidden-dim, or --last-hidden-dim) or drop --tie-weights")

    def _check_softmax(self):
        if self.softmax == "full":
            if self.cutoffs:
                raise ValueError("cutoffs apply to --softmax adaptive only")
            return
        c = self.cutoffs
        if not c or list(c) != sorted(set(c)) or c[-1] >= self.vocab_size:
            raise ValueError(f"adaptive softmax needs cutoffs strictly increasing in "
                             f"[1, V={self.vocab_size}), got {list(c)}")
        if self.tie_weights:
            raise ValueError("tie_weights does not combine with the adaptive softmax")

    @property
    def layer_dims(self):
        """The width of each recurrent layer: H, the last one possibly narrower."""
        return [self.hidden_dim] * (self.num_layers - 1) + [self.last_hidden_dim or
                                                            self.hidden_dim]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = field(
        default=20, at_least=1, help="B, number of parallel streams in a train step")
    bptt: int = field(default=35, at_least=1, help="T, time steps per truncated-BPTT window")
    optimizer: str = field(
        default="sgd", choices=OPTIMIZERS,
        help="sgd, adam, or ntasgd: SGD, then evaluating (and keeping) the average of the "
             "iterates once val ppl stops improving (AWD)")
    nonmono: int = field(
        default=5, at_least=1,
        help="ntasgd: start averaging when val ppl is worse than the best of the checks "
             "more than this many epochs back")
    lr: float = field(
        default=1.0, above=0.0, at_most=1e4,
        help="learning rate for the loss averaged over the B*T tokens of a window")
    clip: float = field(default=0.25, above=0.0,
                        help="clip the gradient to this global norm")
    weight_decay: float = field(
        default=0.0, at_least=0.0,
        help="L2 weight decay added to the clipped gradient (AWD: 1.2e-6)")
    lr_decay: float = field(
        default=1.0, above=0.0, at_most=1.0,
        help="lr factor per epoch once --decay-after epochs are done (Zaremba: 0.5)")
    decay_after: int = field(
        default=0, at_least=0,
        help="epochs at full lr before --lr-decay starts (Zaremba small: 4)")
    plateau_factor: float = field(
        default=1.0, above=0.0, at_most=1.0,
        help="lr factor when val perplexity does not improve (0.25: divide by 4)")
    epochs: int = field(default=1, at_least=1, help="passes over the train split",
                        resumable=True)
    max_steps: int = field(
        default=0, at_least=0, resumable=True,
        help="stop after this many train steps, then evaluate (0: no limit)")
    eval_batch_size: int = field(
        default=10, at_least=1, resumable=True,
        help="parallel streams when evaluating the valid split")
    test_batch_size: int = field(
        default=1, at_least=1, resumable=True,
        help="parallel streams when evaluating the test split")
    windows_per_call: int = field(
        default=10, at_least=1,
        help="truncated-BPTT windows per compiled call (fewer Python round trips)")
    variable_bptt: bool = field(
        default=False, help="AWD-LSTM's variable window length: each compiled call draws T/2 "
                            "(p 0.05), else T-5, T or T+5, and scales its lr by length/T")
    log_every: int = field(default=100, at_least=1, resumable=True,
                           help="train steps between lines of metrics.jsonl")
    save_every: int = field(
        default=1000, at_least=0, resumable=True,
        help="train steps between checkpoints, besides each epoch end (0: epoch ends)")
    keep: int = field(default=3, at_least=1, resumable=True,
                      help="how many of the newest checkpoints to keep (plus the best)")
    on_nonfinite: str = field(
        default="stop", choices=("stop", "skip"), resumable=True,
        help="on a non-finite loss or gradient: stop, or skip the batch")
    devices: int = field(
        default=0, at_least=0, resumable=True,
        help="devices to split the B streams over (0: all); B must be a multiple")
    seed: int = field(default=0, at_least=0,
                      help="random seed for init, dropout and everything else")
    synthetic_gradients: str = field(
        default="none", choices=SG_KINDS,
        help="predict the gradient from beyond the window (DNI): none, linear or mlp")
    sg_scale: float = field(
        default=0.1, at_least=0.0, at_most=1.0,
        help="λ: scale of the synthetic gradient the window's backward pass takes in (and, "
             "without --sg-discount, the discount of its target)")
    sg_discount: float | None = field(
        default=None, at_least=0.0, at_most=1.0,
        help="γ: weight of the next window's synthetic gradient in the SG's bootstrapped "
             "target (a TD-style discount; default: --sg-scale); a value apart from λ "
             "costs a second backward pass")
    sg_lr: float = field(default=1e-3, above=0.0,
                         help="Adam learning rate of the synthetic-gradient module")

    @property
    def dni(self):
        """The DNIConfig of these settings, or None without synthetic gradients."""
        if self.synthetic_gradients == "none":
            return None
        return DNIConfig(self.synthetic_gradients, self.sg_scale, self.sg_lr,
                         discount=self.sg_discount)

    def __post_init__(self):
        check(self)


@dataclasses.dataclass(frozen=True)
class DNIConfig:
    """Synthetic gradients for the carried state (dni.py)."""
    kind: str = field(default="linear", choices=SG_KINDS[1:],
                      help="the synthetic-gradient module: linear or mlp")
    scale: float = field(default=0.1, at_least=0.0, at_most=1.0,
                         help="λ: scale of the synthetic gradient the core takes in")
    lr: float = field(default=1e-3, above=0.0, help="Adam learning rate of the module")
    hidden: int = field(default=256, at_least=1, help="M, width of the mlp's hidden layer")
    init_scale: float = field(default=0.01, above=0.0,
                              help="first layer of the mlp uniform in [-s, s]")
    discount: float | None = field(
        default=None, at_least=0.0, at_most=1.0,
        help="γ: weight of the next SG in the bootstrapped target (None: λ)")

    def __post_init__(self):
        check(self)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the tokens come from and how they become ids; saved in config.json."""
    data: str = field(
        default="ptb",
        help="a named corpus (ptb, tinyshakespeare, wikitext-2, wikitext-103, enwik8, text8), "
             "a directory with {ptb.,}{train,valid,test}.txt, or one text file")
    level: str | None = field(
        default=None, choices=LEVELS,
        help="tokens are words (one <eos> per line) or characters (default: the named "
             "corpus's level, else word)")
    min_count: int = field(
        default=1, at_least=1, help="words seen fewer times in train become <unk>")
    max_vocab: int = field(
        default=0, valid=(lambda v: v == 0 or v >= 2, "0 (all) or at least 2"),
        help="keep only the most frequent words, <unk> included (0: all)")
    data_cache: str | None = field(
        default=None, resumable=True,
        help="directory of the memory-mapped id caches (default: $JAX_RNNLM_CACHE or "
             "~/.cache/jax_rnnlm/ids)")

    def __post_init__(self):
        check(self)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """``jax-rnnlm eval``: which text, how it is batched, and evaluation-time adaptation."""
    split: str = field(default="test", choices=SPLITS, help="which split")
    batch_size: int = field(default=1, at_least=1, help="parallel streams")
    bptt: int = field(
        default=35, at_least=1,
        help="window length (no effect on the static result beyond float rounding; with "
             "--dynamic, the adaptation segment)")
    data: str | None = field(default=None,
                             help="corpus to score (default: the one the run trained on)")
    level: str | None = field(default=None, choices=LEVELS,
                              help="must be the run's level (default: the run's)")
    data_cache: str | None = field(default=None,
                                   help="directory of the id caches (default: the run's)")
    dynamic: str | None = field(
        default=None, choices=DYNAMIC_RULES,
        help="dynamic evaluation: a gradient step on each window after scoring it "
             "(Krause et al. 2018): sgd or rms")
    dynamic_lr: tuple[float, ...] = field(
        default=(1e-3,), at_least=0.0,
        help="its step size (several: tuned on the valid split; 0 adapts nothing)")
    dynamic_decay: tuple[float, ...] = field(
        default=(0.0,), at_least=0.0,
        help="rms rule: pull back toward the trained weights (several: tuned)")
    dynamic_eps: tuple[float, ...] = field(
        default=(1.0,), above=0.0,
        help="rms rule: ε added to √MS, in units of its mean (several: tuned)")
    ms_windows: int = field(
        default=1000, at_least=1,
        help="rms rule: train windows that measure the mean squared gradient")
    cache: tuple[int, ...] | None = field(
        default=None, at_least=1,
        help="neural cache of the last N positions (Grave et al. 2017; several: tuned)")
    cache_theta: tuple[float, ...] = field(
        default=(0.3,), at_least=0.0,
        help="θ, flatness of the cache distribution (several: tuned)")
    cache_lambda: tuple[float, ...] = field(
        default=(0.1,), at_least=0.0, at_most=1.0,
        help="λ, weight of the cache in the mixture (several: tuned)")

    def __post_init__(self):
        check(self)
        if self.dynamic and self.cache:
            raise ValueError("--dynamic and --cache are separate adaptations: choose one")
        if self.tunes_several and self.split == "valid":
            raise ValueError("several adaptation settings are tuned on the valid split; "
                             "evaluate another --split with them")


    @property
    def tunes_several(self):
        """Whether several adaptation settings are given, to be tuned on the valid split."""
        if self.dynamic:
            return len(self.dynamic_lr) * len(self.dynamic_decay) * len(self.dynamic_eps) > 1
        return bool(self.cache) and len(self.cache) * len(self.cache_theta) * len(
            self.cache_lambda) > 1


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """``jax-rnnlm generate``: the prompt and how to sample."""
    prompt: str = field(default="", help="text to continue (default: a new sentence)")
    length: int = field(default=50, at_least=1, help="tokens to sample")
    temperature: float = field(
        default=1.0, at_least=0.0, help="softmax temperature; 0 picks the most likely token")
    top_k: int = field(default=0, at_least=0,
                       help="sample among the k most likely tokens only (0: all)")
    top_p: float = field(
        default=1.0, above=0.0, at_most=1.0,
        help="sample from the smallest set of tokens with this total probability")
    skip: str = field(
        default="<unk>", help="comma-separated tokens never to emit; they are resampled "
                              "without advancing the state")
    num_samples: int = field(default=1, at_least=1, help="samples drawn in parallel")
    seed: int = field(default=0, at_least=0, help="random seed of the sampling")
    json: bool = field(default=False, help="one JSON line per sample instead of plain text "
                                           "(plain text puts an empty line between samples)")

    def __post_init__(self):
        check(self)


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """``jax-rnnlm score``: which text, scored how."""
    text: str = field(help="text file to score, or - for stdin")
    per: str = field(
        default="line", choices=("line", "text"),
        help="score each line from a fresh state after <eos> (line), or the whole text as "
             "one stream as eval does (text)")

    def __post_init__(self):
        check(self)


PRESETS = {
    # The numpy book's SimpleRnnlm is a Python-API toy (experiments/book_simple_rnn.py).
    "book-rnnlm": dict(data="ptb", cell="lstm", embed_dim=100, hidden_dim=100, batch_size=20,
                       bptt=35, optimizer="sgd", lr=20.0, clip=0.25, epochs=4),
    # Zaremba et al. 2014, small: their lr 1 / clip 5 on a loss summed over T = 20 steps.
    "ptb-lstm-small": dict(data="ptb", cell="lstm", num_layers=2, embed_dim=200,
                           hidden_dim=200, init_scale=0.1, batch_size=20, bptt=20,
                           optimizer="sgd", lr=20.0, clip=0.25, lr_decay=0.5, decay_after=4,
                           epochs=13),
    # Zaremba et al. 2014, medium: lr 1 / clip 5 at T = 35, x0.8 per epoch after 6, 39 epochs.
    "ptb-lstm-medium": dict(data="ptb", cell="lstm", num_layers=2, embed_dim=650,
                            hidden_dim=650, dropout=0.5, init_scale=0.05, batch_size=20,
                            bptt=35, optimizer="sgd", lr=35.0, clip=5 / 35, lr_decay=0.8,
                            decay_after=6, epochs=39),
    # Zaremba medium's size and schedule with tied weights and AWD-LSTM's regularisers
    # (experiments/ptb_lstm_medium.py): variational dropout, embedding and weight drop, AR/TAR.
    "ptb-lstm-medium-reg": dict(data="ptb", cell="lstm", num_layers=2, embed_dim=650,
                                hidden_dim=650, tie_weights=True, variational=True, dropout=0.5,
                                dropout_input=0.5, dropout_hidden=0.3, dropout_embed=0.1,
                                weight_drop=0.2, ar=2.0, tar=1.0, init_scale=0.05,
                                batch_size=20, bptt=35, optimizer="sgd", lr=35.0, clip=5 / 35,
                                lr_decay=0.8, decay_after=6, epochs=39),
    # AWD-LSTM (Merity et al. 2018, their PTB command): 3 layers, 1150 wide, the last 400
    # wide and tied, NT-ASGD at lr 30. Meant for a GPU (experiments/awd_lstm.py).
    "awd-lstm": dict(data="ptb", cell="lstm", num_layers=3, embed_dim=400, hidden_dim=1150,
                     last_hidden_dim=400, tie_weights=True, variational=True, dropout=0.4,
                     dropout_input=0.4, dropout_hidden=0.25, dropout_embed=0.1, weight_drop=0.5,
                     ar=2.0, tar=1.0, init_scale=0.1, batch_size=20, bptt=70, variable_bptt=True,
                     optimizer="ntasgd", lr=30.0, clip=0.25, weight_decay=1.2e-6, nonmono=5,
                     epochs=500, eval_batch_size=10, test_batch_size=1),
    # The seed's tanh RNN, tuned here (experiments/ptb_rnn.py). SGD at lr 20 diverged
    # for this model (val ppl 1.3e6 after one epoch); Adam at 2e-3 trains it.
    "ptb-rnn": dict(data="ptb", cell="rnn", num_layers=1, embed_dim=300, hidden_dim=300,
                    tie_weights=True, dropout=0.3, batch_size=20, bptt=35, optimizer="adam",
                    lr=0.002, clip=0.25, lr_decay=0.5, decay_after=5, plateau_factor=0.5,
                    epochs=10),
    # Character-level Tiny Shakespeare, char-rnn's standard corpus.
    "shakespeare-char": dict(data="tinyshakespeare", level="char", cell="lstm", num_layers=2,
                             embed_dim=128, hidden_dim=256, dropout=0.2, batch_size=32,
                             bptt=100, optimizer="adam", lr=0.002, clip=5.0, epochs=10,
                             eval_batch_size=32, test_batch_size=32),
}
