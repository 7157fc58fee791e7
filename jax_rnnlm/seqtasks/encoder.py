"""The encoder of the sequence tasks: embeddings of F token features, then a stack of
masked recurrent layers, each forward or bidirectional, over a padded batch.

Sequences of different lengths are padded to one width T; ``lengths_B`` says how
many leading steps of each row are real. The recurrent layer is the language
model's ``layers.recurrent_layer`` with a mask: on a padded step the carry is kept
and the output is zero, so padding never changes a final state, an output at a
real position, or a loss masked the same way. Layers run time-major ([T, B, ·]).

Params: {"embed": [[V_f, D_f] per feature],
         "layers": [{"fwd": cell, ("bwd": cell)}, ...]}       (cells as in ``cells``)
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import layers
from jax_rnnlm.cells import hidden_width, init_cell, uniform, zero_carry
from jax_rnnlm.config import ModelConfig, check_recurrent
from jax_rnnlm.settings import field, help_of

# The one help text of a matmul-precision field (ModelConfig's).
DTYPE_HELP = help_of(ModelConfig.__dataclass_fields__["dtype"])


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    vocab_sizes: tuple = field(help="V per input feature (word, casing, ...): one table each")
    embed_dims: tuple = field(help="D per input feature; the token vector is their concat")
    hidden_dim: int = field(default=64, help="H, width of each direction of each layer")
    num_layers: int = field(default=1, help="stacked recurrent layers")
    cell: str = field(default="lstm", help="rnn, lstm or gru")
    bidirectional: bool = field(default=True, help="add a backward scan; outputs are 2H wide")
    init_scale: float = field(default=0.1, help="weights start uniform in [-s, s]")
    dtype: str = field(default="float32", help=DTYPE_HELP)

    def __post_init__(self):
        if not self.vocab_sizes or len(self.vocab_sizes) != len(self.embed_dims):
            raise ValueError(f"need one embed dim per vocabulary, got vocab_sizes="
                             f"{self.vocab_sizes} embed_dims={self.embed_dims}")
        if min(self.vocab_sizes + self.embed_dims + (self.hidden_dim, self.num_layers)) < 1:
            raise ValueError("vocab sizes, embed dims, hidden_dim, num_layers must be >= 1")
        check_recurrent(self)

    @property
    def out_dim(self):
        """H', the width of the encoder's outputs: H, or 2H when bidirectional."""
        return self.hidden_dim * (2 if self.bidirectional else 1)


def init_encoder(key, cfg: EncoderConfig):
    """Fresh params for ``cfg`` (layout in the module docstring), uniform in [-s, s]."""
    k_emb, k_lay = jax.random.split(key)
    s = cfg.init_scale
    embed = [uniform(k, (v, d), s) for k, v, d in
             zip(jax.random.split(k_emb, len(cfg.vocab_sizes)), cfg.vocab_sizes, cfg.embed_dims)]
    dirs = ("fwd", "bwd") if cfg.bidirectional else ("fwd",)
    stack = []
    for i, k in enumerate(jax.random.split(k_lay, cfg.num_layers)):
        in_dim = sum(cfg.embed_dims) if i == 0 else cfg.out_dim
        stack.append({d: init_cell(kd, cfg.cell, in_dim, cfg.hidden_dim, s)
                      for d, kd in zip(dirs, jax.random.split(k, 2))})
    return {"embed": embed, "layers": stack}


def check_nonempty(lengths_B, what="sequence"):
    """ValueError naming the first row whose length is < 1, when the lengths are concrete.

    An empty row has nothing to summarise: max pooling and attention over it are
    NaN, and its "final state" is the zero carry. Under ``jax.jit`` the lengths are
    a Tracer and cannot be read, so there the check is the caller's
    (``fit.pad_batch`` checks every batch it builds).
    """
    if isinstance(lengths_B, jax.core.Tracer):
        return
    lengths = np.asarray(lengths_B)
    empty = np.flatnonzero(lengths < 1)
    if empty.size:
        i = int(empty[0])
        raise ValueError(f"{what} {i} is empty (length {lengths[i]}); every {what} needs at "
                         f"least one token ({empty.size} empty in this batch)")


def embed_features(tables, tokens_TBF):
    """Concatenated embeddings of F id columns: [..., F] int -> [..., ΣD_f]."""
    return jnp.concatenate([layers.embedding(tab, tokens_TBF[..., f])
                            for f, tab in enumerate(tables)], axis=-1)


def reverse_padded(xs_TB, lengths_B):
    """Reverse the first lengths_B[b] steps of column b, leave its padding in place.

    xs_TB may have trailing axes [T, B, ...]. The map is its own inverse, so the
    same call puts a backward scan's outputs back in forward order.
    """
    t_T1 = jnp.arange(xs_TB.shape[0], dtype=lengths_B.dtype)[:, None]
    len_1B = lengths_B[None, :]
    idx_TB = jnp.where(t_T1 < len_1B, len_1B - 1 - t_T1, t_T1)
    return jax.vmap(lambda x_T, i_T: x_T[i_T], in_axes=(1, 1), out_axes=1)(xs_TB, idx_TB)


def padded_layer(cell, p, xs_TBD, lengths_B, *, dtype="float32"):
    """One masked recurrent layer of the named cell over a padded batch, from a zero
    carry: (hs_TBH, carry).

    The zero carry takes the input's dtype, so float64 gradient checks stay float64.
    """
    mask_TB = layers.length_mask(lengths_B, xs_TBD.shape[0]).T
    carry0 = zero_carry(cell, xs_TBD.shape[1], hidden_width(cell, p), xs_TBD.dtype)
    return layers.recurrent_layer(cell, p, carry0, xs_TBD, mask_TB, dtype=dtype)


def bidirectional(cell, p_fwd, p_bwd, xs_TBD, lengths_B, *, dtype="float32"):
    """Forward and backward masked scans, outputs concatenated: (hs_TBH', (carry_f, carry_b)).

    The backward scan reads each row from its own last real step down to step 0
    (not from T - 1), so padding never reaches it. Its final carry is the state
    after reading step 0.
    """
    hf_TBH, c_f = padded_layer(cell, p_fwd, xs_TBD, lengths_B, dtype=dtype)
    hb_TBH, c_b = padded_layer(cell, p_bwd, reverse_padded(xs_TBD, lengths_B), lengths_B,
                               dtype=dtype)
    return jnp.concatenate([hf_TBH, reverse_padded(hb_TBH, lengths_B)], axis=-1), (c_f, c_b)


def _stack_layer(cell, p, xs_TBD, lengths_B, dtype):
    """One layer of the stack: (hs_TBH', final carries (carry_f,) or (carry_f, carry_b))."""
    if "bwd" in p:
        return bidirectional(cell, p["fwd"], p["bwd"], xs_TBD, lengths_B, dtype=dtype)
    hs_TBH, carry = padded_layer(cell, p["fwd"], xs_TBD, lengths_B, dtype=dtype)
    return hs_TBH, (carry,)


def encoder_states(params, cfg: EncoderConfig, tokens, lengths_B, key=None, dropout=0.0):
    """Embedding + masked (bi)recurrent stack over a padded batch.

    tokens [B, T, F] int (or [B, T] for one feature), lengths [B] -> (hs_TBH', zero
    at padding; the last layer's final carries, (carry_f,) or (carry_f, carry_b)).
    Dropout at rate ``dropout`` hits the embeddings and every layer's outputs, and
    applies exactly when a PRNG ``key`` is given (training).
    """
    tokens_BTF = tokens if tokens.ndim == 3 else tokens[..., None]
    n = len(params["layers"]) + 1
    keys = list(jax.random.split(key, n)) if key is not None and dropout else [None] * n
    x_TBD = layers.dropout(keys[0], embed_features(params["embed"], tokens_BTF.swapaxes(0, 1)),
                           dropout)
    for p, k in zip(params["layers"], keys[1:], strict=True):
        x_TBD, finals = _stack_layer(cfg.cell, p, x_TBD, lengths_B, cfg.dtype)
        x_TBD = layers.dropout(k, x_TBD, dropout)
    return x_TBD, finals
