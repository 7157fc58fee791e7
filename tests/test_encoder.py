"""Masks and padding: padded steps change nothing, the masked layer's hand-written backward
equals autodiff of a loop masked by hand, bidirectional = two manual scans, empty
sequences are rejected."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from support.trees import assert_trees_close

from jax_rnnlm import cells, layers
from jax_rnnlm.precision import DTYPES
from jax_rnnlm.seqtasks import encoder, fit
from jax_rnnlm.seqtasks.encoder import EncoderConfig

CELL_NAMES = sorted(cells.CELLS)
# Jitted once per shape; hypothesis examples vary values and lengths, not shapes.
recurrent_layer = jax.jit(layers.recurrent_layer, static_argnums=0, static_argnames="dtype")
bidirectional = jax.jit(encoder.bidirectional, static_argnums=0)
encoder_states = jax.jit(encoder.encoder_states, static_argnums=1)
B, T, EXTRA = 3, 5, 3


def manual_scan(cell, p, xs_TBD):
    """The cell's step in a Python loop over time: (hs_TBH, carry), no scan, no mask."""
    step = cells.CELLS[cell].step
    c, hs = cells.zero_carry(cell, xs_TBD.shape[1], cells.hidden_width(cell, p)), []
    for x_BD in xs_TBD:
        c, h = step(p, c, x_BD)
        hs.append(h)
    return jnp.stack(hs), c


def rows(seed, B, T_max, D):
    """B random rows of lengths 1..T_max: (xs_TBD padded with noise, lengths_B)."""
    k_x, k_l = jax.random.split(jax.random.key(seed))
    lengths = jax.random.randint(k_l, (B,), 1, T_max + 1)
    return jax.random.normal(k_x, (T_max, B, D)), lengths


def test_pad_batch_pads_to_a_multiple_and_reports_lengths():
    ids, lengths = fit.pad_batch([[5, 6, 7], [8]], pad_id=0, multiple=4)
    np.testing.assert_array_equal(ids, [[5, 6, 7, 0], [8, 0, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1])


def test_pad_batch_rejects_an_empty_sequence_naming_its_index():
    with pytest.raises(ValueError, match=r"sequence 2 is empty \(length 0\)"):
        fit.pad_batch([[5, 6], [7], [], [8]])


def test_reverse_padded_reverses_within_each_length_and_is_its_own_inverse():
    xs = jnp.arange(8).reshape(4, 2)  # [T=4, B=2]
    lengths = jnp.array([3, 1])
    out = encoder.reverse_padded(xs, lengths)
    np.testing.assert_array_equal(out[:, 0], [4, 2, 0, 6])
    np.testing.assert_array_equal(out[:, 1], [1, 3, 5, 7])
    np.testing.assert_array_equal(encoder.reverse_padded(out, lengths), xs)


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=3)
@given(seed=st.integers(0, 999))
def test_appending_padding_leaves_outputs_and_final_carry_unchanged(cell, seed):
    p = cells.init_cell(jax.random.key(seed), cell, 3, 4, scale=0.5)
    xs, lengths = rows(seed, B, T, 3)
    noise = 100.0 * jax.random.normal(jax.random.key(seed + 1), (EXTRA, B, 3))
    c0 = cells.zero_carry(cell, B, 4)
    hs, c = recurrent_layer(cell, p, c0, xs, layers.length_mask(lengths, T).T)
    xs_long = jnp.concatenate([xs, noise])
    hs_long, c_long = recurrent_layer(cell, p, c0, xs_long, layers.length_mask(lengths, T + EXTRA).T)
    np.testing.assert_allclose(hs_long[:T], hs, rtol=1e-6, atol=1e-6)
    assert not np.any(hs_long[T:])  # outputs at padding are zero
    assert_trees_close(c_long, c, rtol=1e-6, atol=1e-6)
    # The final carry is the state after each row's last real step of the plain layer.
    full_hs, _ = recurrent_layer(cell, p, c0, xs)
    last_h = full_hs[lengths - 1, jnp.arange(B)]
    np.testing.assert_allclose(cells.hidden(c), last_h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_all_true_mask_equals_the_unmasked_layer(cell):
    p = cells.init_cell(jax.random.key(0), cell, 3, 4, scale=0.5)
    xs = jax.random.normal(jax.random.key(1), (T, B, 3))
    c0 = cells.zero_carry(cell, B, 4)
    hs, c = recurrent_layer(cell, p, c0, xs, jnp.ones((T, B), bool))
    hs_ref, c_ref = recurrent_layer(cell, p, c0, xs)
    np.testing.assert_allclose(hs, hs_ref, rtol=1e-6, atol=1e-6)
    assert_trees_close(c, c_ref, rtol=1e-6, atol=1e-6)


def loop_masked_by_hand(cell, dtype, p, carry, xs_TBD, mask_TB):
    """Cell.step in a Python loop with the mask applied here, not by the layer: a padded
    step keeps the carry and outputs zeros. (hs_TBH, final carry)."""
    c, outs = carry, []
    for t in range(xs_TBD.shape[0]):
        new, h = cells.CELLS[cell].step(p, c, xs_TBD[t], dtype)
        real_B1 = mask_TB[t][:, None]
        c = jax.tree.map(lambda n, o: jnp.where(real_B1, n, o), new, c)
        outs.append(jnp.where(real_B1, h, 0.0))
    return jnp.stack(outs), c


@functools.cache
def masked_layer_grads(cell, dtype):
    """Jitted gradients, for every input but the mask, of one objective of the layer's
    outputs and final carry: (by the masked layer, by the loop masked by hand)."""
    def objective(hs, carry, w_hs, w_c):  # weights every output and the final carry's leaves
        return jnp.sum(hs * w_hs) + sum(jnp.sum(c * w_c) for c in jax.tree.leaves(carry))

    def by_layer(p, carry, xs, mask, w_hs, w_c):
        return objective(*layers.recurrent_layer(cell, p, carry, xs, mask, dtype=dtype),
                         w_hs, w_c)

    def by_loop(p, carry, xs, mask, w_hs, w_c):
        return objective(*loop_masked_by_hand(cell, dtype, p, carry, xs, mask), w_hs, w_c)

    return tuple(jax.jit(jax.grad(f, argnums=(0, 1, 2))) for f in (by_layer, by_loop))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=4)
@given(lengths=st.lists(st.integers(0, T), min_size=B, max_size=B), seed=st.integers(0, 999))
def test_masked_layer_backward_equals_autodiff_of_a_loop_masked_by_hand(cell, dtype, lengths,
                                                                        seed):
    """The layer's hand-written backward pass with a mask, for every input (weights, gru's
    b_hn, carry, xs): float32 in float64 to 1e-10; bfloat16 (rounded operands in both)
    to bf16 precision."""
    ks = jax.random.split(jax.random.key(seed), 5)
    p = cells.init_cell(ks[0], cell, 3, 4, scale=0.5)
    carry0 = jax.tree.map(lambda z: jax.random.normal(ks[1], z.shape), cells.zero_carry(cell, B, 4))
    mask = layers.length_mask(jnp.array(lengths), T).T
    args = (p, carry0, jax.random.normal(ks[2], (T, B, 3)), mask,
            jax.random.normal(ks[3], (T, B, 4)), jax.random.normal(ks[4], (B, 4)))
    fp32 = dtype == "float32"
    if fp32:
        args = jax.tree.map(lambda a: np.asarray(a, np.float64 if a.dtype != bool else bool),
                            args)
    with jax.enable_x64(fp32):
        got, want = (grad(*args) for grad in masked_layer_grads(cell, dtype))
    assert_trees_close(got, want, **(dict(rtol=1e-10, atol=1e-12) if fp32
                                     else dict(rtol=2e-2, atol=2e-2)))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@settings(max_examples=3)
@given(seed=st.integers(0, 999))
def test_bidirectional_equals_two_manual_scans_per_row(cell, seed):
    k_f, k_b = jax.random.split(jax.random.key(seed))
    p_f, p_b = (cells.init_cell(k, cell, 3, 4, scale=0.5) for k in (k_f, k_b))
    xs, lengths = rows(seed, B, T, 3)
    hs, (c_f, c_b) = bidirectional(cell, p_f, p_b, xs, lengths)
    assert hs.shape == (T, B, 8)
    for b in range(B):
        n = int(lengths[b])
        x = xs[:n, b:b + 1]  # this row alone, no padding at all
        hf, cf = manual_scan(cell, p_f, x)
        hb, cb = manual_scan(cell, p_b, x[::-1])
        np.testing.assert_allclose(hs[:n, b, :4], hf[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hs[:n, b, 4:], hb[::-1, 0], rtol=1e-5, atol=1e-6)
        row = lambda c: jax.tree.map(lambda leaf: leaf[b:b + 1], c)
        assert_trees_close(row(c_f), cf, rtol=1e-5, atol=1e-6)
        assert_trees_close(row(c_b), cb, rtol=1e-5, atol=1e-6)
        assert not np.any(hs[n:, b])


@pytest.mark.parametrize("bi,num_layers", [(True, 2), (False, 1)])
@settings(max_examples=3)
@given(seed=st.integers(0, 999))
def test_encoder_stack_ignores_padding_tokens(bi, num_layers, seed):
    cfg = EncoderConfig((7, 3), (4, 2), hidden_dim=5, num_layers=num_layers, bidirectional=bi,
                        init_scale=0.5)
    params = encoder.init_encoder(jax.random.key(seed), cfg)
    k_t, k_p = jax.random.split(jax.random.key(seed + 1))
    tokens = jax.random.randint(k_t, (2, 4, 2), 0, 3)
    lengths = jnp.array([4, 2])
    junk = jax.random.randint(k_p, (2, EXTRA, 2), 0, 3)
    hs, finals = encoder_states(params, cfg, tokens, lengths)
    hs2, finals2 = encoder_states(params, cfg, jnp.concatenate([tokens, junk], axis=1), lengths)
    assert hs.shape == (4, 2, cfg.out_dim)
    np.testing.assert_allclose(hs2[:4], hs, rtol=1e-5, atol=1e-6)
    assert_trees_close(finals2, finals, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (dict(embed_dims=(4,)), "one embed dim per vocabulary"),
    (dict(hidden_dim=0), "must be >= 1"),
    (dict(cell="transformer"), "unknown cell 'transformer'"),
    (dict(dtype="float16"), "dtype must be one of"),
])
def test_encoder_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**{"vocab_sizes": (7, 3), "embed_dims": (4, 2), **bad})
