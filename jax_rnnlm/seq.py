"""Variable-length batches: padding, masks, masked and bidirectional recurrent layers.

Sequences of different lengths are padded to one width T; ``lengths_B`` says
how many leading steps of each row are real. On a padded step the scan carry
is frozen (the step's new carry is discarded) and the output is zero, so a
padded position never changes a final state, an output at a real position,
or a loss that is masked the same way. The cell math is the one in
``cells.CELLS[name].step``; this module only decides which results to keep.

Shapes: B batch, T time, D embedding, H hidden, F input features per token.
Recurrent layers run time-major ([T, B, ·]), as in ``layers.recurrent_layer``.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import layers
from jax_rnnlm.cells import CELLS, cell_name, init_cell
from jax_rnnlm.config import field


def pad_batch(seqs, *, pad_id=0, multiple=1, width=None):
    """Int sequences -> (ids_BT int32, lengths_B int32), numpy, padded with ``pad_id``.

    T is the longest length (or ``width``), rounded up to ``multiple`` so that a
    jitted function sees few distinct shapes. Sequences of [T_b, F] arrays give
    ids [B, T, F].
    """
    lengths = np.array([len(s) for s in seqs], np.int32)
    t = int(lengths.max(initial=1)) if width is None else width
    t = -(-t // multiple) * multiple
    ids = np.full((len(seqs), t) + np.shape(seqs[0])[1:], pad_id, np.int32)
    for row, s in zip(ids, seqs):
        row[:len(s)] = s
    return ids, lengths


def length_mask(lengths_B, T):
    """mask_BT bool: True at the first lengths_B[b] steps of row b."""
    return jnp.arange(T, dtype=lengths_B.dtype)[None, :] < lengths_B[:, None]


def reverse_padded(xs_TB, lengths_B):
    """Reverse the first lengths_B[b] steps of column b, leave its padding in place.

    xs_TB may have trailing axes [T, B, ...]. The map is its own inverse, so the
    same call puts a backward scan's outputs back in forward order.
    """
    t_T1 = jnp.arange(xs_TB.shape[0], dtype=lengths_B.dtype)[:, None]
    len_1B = lengths_B[None, :]
    idx_TB = jnp.where(t_T1 < len_1B, len_1B - 1 - t_T1, t_T1)
    return jax.vmap(lambda x_T, i_T: x_T[i_T], in_axes=(1, 1), out_axes=1)(xs_TB, idx_TB)


def zero_carry(p, batch, dtype=jnp.float32):
    """Zero state for the cell whose params are ``p`` (H read off w_h [H, G·H])."""
    return CELLS[cell_name(p)].zero_carry(batch, p["w_h"].shape[0], dtype)


def keep_where(mask_B, new, old):
    """``new`` on rows where mask_B, else ``old``, for every [B, ...] leaf of a pytree."""
    def pick(n, o):
        return jnp.where(mask_B.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(pick, new, old)


def masked_recurrent_layer(p, carry, xs_TBD, mask_TB):
    """A recurrent layer that skips padded steps. Returns (hs_TBH, final carry).

    Same cell step as ``layers.recurrent_layer``; where mask_TB is False the
    carry passes through unchanged and the output is zero. The final carry is
    thus the state after each row's last real step.
    """
    step = CELLS[cell_name(p)].step
    xw_TBG = layers.add_bias(xs_TBD @ p["w_x"], p["b"])  # all steps in one matmul

    def body(c, inputs):
        xw_BG, m_B = inputs
        c_new, h_BH = step(p, c, xw_BG)
        return keep_where(m_B, c_new, c), keep_where(m_B, h_BH, jnp.zeros_like(h_BH))

    carry, hs_TBH = jax.lax.scan(body, carry, (xw_TBG, mask_TB))
    return hs_TBH, carry


def bidirectional(p_fwd, p_bwd, xs_TBD, lengths_B, carries=None):
    """Forward and backward masked scans, outputs concatenated: (hs_TB2H, (carry_f, carry_b)).

    The backward scan reads each row from its own last real step down to step
    0 (not from T - 1), so padding never reaches it. Its final carry is the
    state after reading step 0.
    """
    T, B = xs_TBD.shape[:2]
    c_f, c_b = carries or (zero_carry(p_fwd, B, xs_TBD.dtype), zero_carry(p_bwd, B, xs_TBD.dtype))
    mask_TB = length_mask(lengths_B, T).T
    hf_TBH, c_f = masked_recurrent_layer(p_fwd, c_f, xs_TBD, mask_TB)
    hb_TBH, c_b = masked_recurrent_layer(p_bwd, c_b, reverse_padded(xs_TBD, lengths_B), mask_TB)
    return jnp.concatenate([hf_TBH, reverse_padded(hb_TBH, lengths_B)], axis=-1), (c_f, c_b)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    vocab_sizes: tuple = field(help="V per input feature (word, casing, ...): one table each")
    embed_dims: tuple = field(help="D per input feature; the token vector is their concat")
    hidden_dim: int = field(default=64, help="H, width of each direction of each layer")
    num_layers: int = field(default=1, help="stacked recurrent layers")
    cell: str = field(default="lstm", help="rnn, lstm or gru")
    bidirectional: bool = field(default=True, help="add a backward scan; outputs are 2H wide")
    init_scale: float = field(default=0.1, help="weights start uniform in [-s, s]")

    def __post_init__(self):
        if not self.vocab_sizes or len(self.vocab_sizes) != len(self.embed_dims):
            raise ValueError(f"need one embed dim per vocabulary, got vocab_sizes="
                             f"{self.vocab_sizes} embed_dims={self.embed_dims}")
        if min(self.vocab_sizes + self.embed_dims + (self.hidden_dim, self.num_layers)) < 1:
            raise ValueError("vocab sizes, embed dims, hidden_dim, num_layers must be >= 1")
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}: choose one of {sorted(CELLS)}")
        if not self.init_scale > 0.0:
            raise ValueError(f"init_scale must be > 0, got {self.init_scale}")

    @property
    def out_dim(self):
        """Width of the encoder's outputs: H, or 2H when bidirectional."""
        return self.hidden_dim * (2 if self.bidirectional else 1)


def init_encoder(key, cfg: EncoderConfig):
    """{"embed": [[V_f, D_f] per feature], "layers": [{"fwd": cell, ("bwd": cell)}, ...]}."""
    k_emb, k_lay = jax.random.split(key)
    s = cfg.init_scale
    embed = [jax.random.uniform(k, (v, d), jnp.float32, -s, s) for k, v, d in
             zip(jax.random.split(k_emb, len(cfg.vocab_sizes)), cfg.vocab_sizes, cfg.embed_dims)]
    dirs = ("fwd", "bwd") if cfg.bidirectional else ("fwd",)
    lays = []
    for i, k in enumerate(jax.random.split(k_lay, cfg.num_layers)):
        in_dim = sum(cfg.embed_dims) if i == 0 else cfg.out_dim
        lays.append({d: init_cell(kd, cfg.cell, in_dim, cfg.hidden_dim, s)
                     for d, kd in zip(dirs, jax.random.split(k, 2))})
    return {"embed": embed, "layers": lays}


def embed_features(tables, tokens_BTF):
    """Concatenated embeddings of F id columns: [B, T, F] int -> [B, T, ΣD_f]."""
    return jnp.concatenate([layers.embedding(tab, tokens_BTF[..., f])
                            for f, tab in enumerate(tables)], axis=-1)


def encode(params, tokens_BTF, lengths_B, *, key=None, dropout=0.0):
    """Embedding + masked (bi)recurrent stack.

    tokens [B, T, F] int (or [B, T] for one feature), lengths [B] ->
    (hs_TBH' with H' = H or 2H, zero at padding; last layer's final carries
    as a tuple: (carry_f,) or (carry_f, carry_b)). Dropout (needs ``key``) hits
    the embeddings and every layer's outputs.
    """
    if tokens_BTF.ndim == 2:
        tokens_BTF = tokens_BTF[..., None]
    keys = (list(jax.random.split(key, len(params["layers"]) + 1)) if dropout and key is not None
            else [None] * (len(params["layers"]) + 1))
    x_TBD = embed_features(params["embed"], tokens_BTF.swapaxes(0, 1))
    x_TBD = layers.dropout(keys[0], x_TBD, dropout)
    mask_TB = length_mask(lengths_B, x_TBD.shape[0]).T
    for p, k in zip(params["layers"], keys[1:]):
        if "bwd" in p:
            x_TBD, finals = bidirectional(p["fwd"], p["bwd"], x_TBD, lengths_B)
        else:
            c0 = zero_carry(p["fwd"], x_TBD.shape[1], x_TBD.dtype)
            x_TBD, c = masked_recurrent_layer(p["fwd"], c0, x_TBD, mask_TB)
            finals = (c,)
        x_TBD = layers.dropout(k, x_TBD, dropout)
    return x_TBD, finals


def carry_h(carry):
    """The hidden state h [B, H] of a carry: h itself, or h of lstm's (h, c)."""
    return carry[0] if isinstance(carry, tuple) else carry
