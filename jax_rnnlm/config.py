"""Every setting of a language-model run, declared once: the model, the training
loop, the named presets of the recorded experiments, and config files.

Each field carries its one-line help (shown by ``jax-rnnlm train --help``, and
the README's flag table is these fields). A ``TrainConfig`` field marked
``resumable=True`` may change when a run resumes from its workdir; every other
setting must match the checkpoint (``workdir.differences``).
Precedence on the command line: defaults < --preset < --config FILE < flags.
"""
import dataclasses
import json
import math
import sys
from pathlib import Path

from jax_rnnlm.cells import CELLS
from jax_rnnlm.precision import DTYPES

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

OPTIMIZERS = ("sgd", "adam", "ntasgd")
SG_KINDS = ("none", "linear", "mlp")


def field(default=dataclasses.MISSING, *, help, resumable=False):
    """A dataclass field with a default, a one-line help text, and whether it may
    change on resume."""
    return dataclasses.field(default=default, metadata={"help": help, "resumable": resumable})


def help_of(f: dataclasses.Field):
    return f.metadata["help"]


def resumable_fields(cls):
    """Names of the fields of ``cls`` marked resumable."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("resumable")}


def check_recurrent(cfg):
    """The checks every recurrent model's config shares (the LM's and the tasks'):
    the cell, the init scale, the matmul precision."""
    if cfg.cell not in CELLS:
        raise ValueError(f"unknown cell {cfg.cell!r}: choose one of {sorted(CELLS)}")
    if not cfg.init_scale > 0.0:
        raise ValueError(f"init_scale must be > 0, got {cfg.init_scale}")
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {cfg.dtype!r}")


def _positive_ints(obj, names):
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = field(help="V, number of word (or character) types")
    embed_dim: int = field(default=200, help="D, width of the word embedding")
    hidden_dim: int = field(default=200, help="H, width of each recurrent layer")
    last_hidden_dim: int = field(
        default=0, help="width of the last recurrent layer (0: --hidden-dim); AWD-LSTM sets "
                        "it to --embed-dim so the output layer can be tied")
    num_layers: int = field(default=1, help="number of stacked recurrent layers")
    cell: str = field(default="lstm", help="recurrent cell: rnn (tanh), lstm or gru")
    dropout: float = field(
        default=0.0, help="dropout on non-recurrent connections, in [0, 1) (Zaremba et al.): "
                          "the embedding output, between layers and the last layer's output")
    dropout_input: float | None = field(
        default=None, help="dropout on the embedding output instead of --dropout (AWD: 0.4)")
    dropout_hidden: float | None = field(
        default=None, help="dropout between recurrent layers instead of --dropout (AWD: 0.25)")
    variational: bool = field(
        default=False, help="one dropout mask per stream and window, shared by its time steps "
                            "(Gal & Ghahramani's variational / locked dropout)")
    dropout_embed: float = field(
        default=0.0, help="drop whole words: each type's embedding zeroed with this "
                          "probability per window (AWD: 0.1)")
    weight_drop: float = field(
        default=0.0, help="DropConnect on the recurrent weights w_h, one mask per window "
                          "(AWD: 0.5)")
    ar: float = field(
        default=0.0, help="activation regularisation: + ar * mean square of the last layer's "
                          "dropped-out output, in training (AWD: 2)")
    tar: float = field(
        default=0.0, help="temporal activation regularisation: + tar * mean square of the last "
                          "layer's h_t - h_{t-1}, in training (AWD: 1)")
    tie_weights: bool = field(
        default=False, help="output weight = embedding transposed (needs embed-dim == hidden-dim)")
    init_scale: float = field(
        default=0.1, help="weights start uniform in [-init-scale, init-scale]")
    softmax: str = field(
        default="full", help="output layer: full, or adaptive (Grave et al. 2017; the "
                             "vocabulary is then ordered by frequency)")
    cutoffs: tuple = field(
        default=(), help="adaptive softmax: comma-separated word ranks where the head and "
                         "each tail cluster end, e.g. 2000,10000")
    div_value: float = field(
        default=4.0, help="adaptive softmax: tail i projects h to H / div-value^i dimensions")
    dtype: str = field(
        default="float32", help="matmul precision: float32, or bfloat16 (bf16 operands, fp32 "
                                "accumulation; params, loss and optimizer state stay fp32)")

    def __post_init__(self):
        _positive_ints(self, ("vocab_size", "embed_dim", "hidden_dim", "num_layers"))
        check_recurrent(self)
        object.__setattr__(self, "cutoffs", tuple(self.cutoffs))  # a list from JSON
        self._check_softmax()
        for name in ("dropout", "dropout_input", "dropout_hidden", "dropout_embed",
                     "weight_drop"):
            rate = getattr(self, name)
            if rate is not None and not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        if not (self.ar >= 0.0 and self.tar >= 0.0):
            raise ValueError(f"ar and tar must be >= 0, got {self.ar} and {self.tar}")
        if self.last_hidden_dim < 0:
            raise ValueError(f"last_hidden_dim must be >= 0, got {self.last_hidden_dim}")
        if self.tie_weights and self.embed_dim != self.layer_dims[-1]:
            raise ValueError(f"tie_weights needs embed_dim == the last layer's width, got "
                             f"{self.embed_dim} != {self.layer_dims[-1]}; set them equal "
                             f"(--hidden-dim, or --last-hidden-dim) or drop --tie-weights")

    def _check_softmax(self):
        if self.softmax not in ("full", "adaptive"):
            raise ValueError(f"softmax must be full or adaptive, got {self.softmax!r}")
        if self.softmax == "full":
            if self.cutoffs:
                raise ValueError("cutoffs apply to --softmax adaptive only")
            return
        c = self.cutoffs
        if not c or any(not isinstance(x, int) for x in c) or list(c) != sorted(set(c)) \
                or c[0] < 1 or c[-1] >= self.vocab_size:
            raise ValueError(f"adaptive softmax needs cutoffs strictly increasing in "
                             f"[1, V={self.vocab_size}), got {list(c)}")
        if self.tie_weights:
            raise ValueError("tie_weights does not combine with the adaptive softmax")
        if not self.div_value >= 1.0:
            raise ValueError(f"div_value must be >= 1, got {self.div_value}")

    @property
    def layer_dims(self):
        """The width of each recurrent layer: H, the last one possibly narrower."""
        return [self.hidden_dim] * (self.num_layers - 1) + [self.last_hidden_dim or
                                                            self.hidden_dim]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = field(
        default=20, help="B, number of parallel streams in a train step")
    bptt: int = field(default=35, help="T, time steps per truncated-BPTT window")
    optimizer: str = field(
        default="sgd", help="sgd, adam, or ntasgd: SGD, then evaluating (and keeping) the "
                            "average of the iterates once val ppl stops improving (AWD)")
    nonmono: int = field(
        default=5, help="ntasgd: start averaging when val ppl is worse than the best of the "
                        "checks more than this many epochs back")
    lr: float = field(
        default=1.0, help="learning rate for the loss averaged over the B*T tokens of a window")
    clip: float = field(default=0.25, help="clip the gradient to this global norm")
    weight_decay: float = field(
        default=0.0, help="L2 weight decay added to the clipped gradient (AWD: 1.2e-6)")
    lr_decay: float = field(
        default=1.0, help="lr factor per epoch once --decay-after epochs are done (Zaremba: 0.5)")
    decay_after: int = field(
        default=0, help="epochs at full lr before --lr-decay starts (Zaremba small: 4)")
    plateau_factor: float = field(
        default=1.0, help="lr factor when val perplexity does not improve (0.25: divide by 4)")
    epochs: int = field(default=1, help="passes over the train split", resumable=True)
    max_steps: int = field(
        default=0, help="stop after this many train steps, then evaluate (0: no limit)",
        resumable=True)
    eval_batch_size: int = field(
        default=10, help="parallel streams when evaluating the valid split", resumable=True)
    test_batch_size: int = field(
        default=1, help="parallel streams when evaluating the test split", resumable=True)
    windows_per_call: int = field(
        default=10, help="truncated-BPTT windows per compiled call (fewer Python round trips)")
    variable_bptt: bool = field(
        default=False, help="AWD-LSTM's variable window length: each compiled call draws T/2 "
                            "(p 0.05), else T-5, T or T+5, and scales its lr by length/T")
    log_every: int = field(default=100, help="train steps between lines of metrics.jsonl",
                           resumable=True)
    save_every: int = field(
        default=1000, help="train steps between checkpoints, besides each epoch end (0: epoch ends)",
        resumable=True)
    keep: int = field(default=3, help="how many of the newest checkpoints to keep (plus the best)",
                      resumable=True)
    on_nonfinite: str = field(
        default="stop", help="on a non-finite loss or gradient: stop, or skip the batch",
        resumable=True)
    devices: int = field(
        default=0, help="devices to split the B streams over (0: all); B must be a multiple",
        resumable=True)
    seed: int = field(default=0, help="random seed for init, dropout and everything else")
    synthetic_gradients: str = field(
        default="none", help="predict the gradient from beyond the window (DNI): none, "
                             "linear or mlp")
    sg_scale: float = field(
        default=0.1, help="λ: scale of the synthetic gradient the window's backward pass "
                          "takes in (and, without --sg-discount, the discount of its target)")
    sg_discount: float | None = field(
        default=None, help="γ: weight of the next window's synthetic gradient in the SG's "
                           "bootstrapped target (a TD-style discount; default: --sg-scale); "
                           "a value apart from λ costs a second backward pass")
    sg_lr: float = field(default=1e-3, help="Adam learning rate of the synthetic-gradient module")

    @property
    def dni(self):
        """The DNIConfig of these settings, or None without synthetic gradients."""
        if self.synthetic_gradients == "none":
            return None
        return DNIConfig(self.synthetic_gradients, self.sg_scale, self.sg_lr,
                         discount=self.sg_discount)

    def __post_init__(self):
        _positive_ints(self, ("batch_size", "bptt", "epochs", "eval_batch_size", "nonmono",
                              "test_batch_size", "windows_per_call", "log_every"))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: choose one of "
                             f"{sorted(OPTIMIZERS)}")
        if not (math.isfinite(self.lr) and 0.0 < self.lr <= 1e4):
            raise ValueError(f"lr must be in (0, 1e4], got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0.0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.clip > 0.0:
            raise ValueError(f"clip must be > 0 (the max gradient norm), got {self.clip}")
        if not 0.0 < self.lr_decay <= 1.0 or not 0.0 < self.plateau_factor <= 1.0:
            raise ValueError("lr_decay and plateau_factor must be in (0, 1]")
        if self.max_steps < 0 or self.decay_after < 0 or self.save_every < 0:
            raise ValueError("max_steps, decay_after and save_every must be >= 0")
        if self.devices < 0:
            raise ValueError(f"devices must be >= 0 (0: all devices), got {self.devices}")
        if self.keep < 1:
            raise ValueError(f"keep must be at least 1, got {self.keep}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {self.on_nonfinite!r}")
        if self.synthetic_gradients not in SG_KINDS:
            raise ValueError(f"synthetic_gradients must be one of {SG_KINDS}, got "
                             f"{self.synthetic_gradients!r}")


@dataclasses.dataclass(frozen=True)
class DNIConfig:
    """Synthetic gradients for the carried state (dni.py)."""
    kind: str = field(default="linear", help="the synthetic-gradient module: linear or mlp")
    scale: float = field(default=0.1, help="λ: scale of the synthetic gradient the core takes in")
    lr: float = field(default=1e-3, help="Adam learning rate of the module")
    hidden: int = field(default=256, help="M, width of the mlp's hidden layer")
    init_scale: float = field(default=0.01, help="first layer of the mlp uniform in [-s, s]")
    discount: float | None = field(
        default=None, help="γ: weight of the next SG in the bootstrapped target (None: λ)")

    def __post_init__(self):
        if self.kind not in SG_KINDS[1:]:
            raise ValueError(f"synthetic gradients must be one of {SG_KINDS[1:]}, got "
                             f"{self.kind!r}")
        if not 0.0 <= self.scale <= 1.0:
            raise ValueError(f"sg_scale must be in [0, 1], got {self.scale}")
        if self.discount is not None and not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"sg_discount must be in [0, 1], got {self.discount}")
        if not (math.isfinite(self.lr) and self.lr > 0.0):
            raise ValueError(f"sg_lr must be > 0, got {self.lr}")
        if self.hidden < 1:
            raise ValueError(f"the sg hidden width must be >= 1, got {self.hidden}")


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


def read_config_file(path):
    """Settings from a .toml or .json file, as {field_name: value}."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}"
                         f" ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a table of settings at the top level")
    return {k.replace("-", "_"): v for k, v in values.items()}


def check_keys(values, known, source):
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(known))}")
