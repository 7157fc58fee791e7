"""Named settings of the recorded experiments, and config files (TOML or JSON).

Precedence: defaults < --preset < --config FILE < flags on the command line.
"""
import json
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

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
