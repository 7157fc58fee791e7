"""Masks and padding: padded steps change nothing; bidirectional = two manual scans."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import cells, layers, seq
from jax_rnnlm.seq import EncoderConfig

CELL_NAMES = sorted(cells.CELLS)
# Jitted once per shape; hypothesis examples vary values and lengths, not shapes.
masked_layer = jax.jit(seq.masked_recurrent_layer)
bidirectional = jax.jit(seq.bidirectional)
encode = jax.jit(seq.encode)
B, T, EXTRA = 3, 5, 3


def manual_scan(p, xs_TBD):
    """The cell's step in a Python loop over time: (hs_TBH, carry), no scan, no mask."""
    step = cells.CELLS[cells.cell_name(p)].step
    c, hs = seq.zero_carry(p, xs_TBD.shape[1]), []
    for x_BD in xs_TBD:
        c, h = step(p, c, x_BD @ p["w_x"] + p["b"][None, :])
        hs.append(h)
    return jnp.stack(hs), c


def rows(seed, B, T_max, D):
    """B random rows of lengths 1..T_max: (xs_TBD padded with noise, lengths_B)."""
    k_x, k_l = jax.random.split(jax.random.key(seed))
    lengths = jax.random.randint(k_l, (B,), 1, T_max + 1)
    return jax.random.normal(k_x, (T_max, B, D)), lengths


def test_pad_batch_pads_to_a_multiple_and_reports_lengths():
    ids, lengths = seq.pad_batch([[5, 6, 7], [8]], pad_id=0, multiple=4)
    np.testing.assert_array_equal(ids, [[5, 6, 7, 0], [8, 0, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1])


def test_reverse_padded_reverses_within_each_length_and_is_its_own_inverse():
    xs = jnp.arange(8).reshape(4, 2)  # [T=4, B=2]
    lengths = jnp.array([3, 1])
    out = seq.reverse_padded(xs, lengths)
    np.testing.assert_array_equal(out[:, 0], [4, 2, 0, 6])
    np.testing.assert_array_equal(out[:, 1], [1, 3, 5, 7])
    np.testing.assert_array_equal(seq.reverse_padded(out, lengths), xs)


recurrent_layer = jax.jit(layers.recurrent_layer)


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 999))
def test_appending_padding_leaves_outputs_and_final_carry_unchanged(cell, seed):
    p = cells.init_cell(jax.random.key(seed), cell, 3, 4, scale=0.5)
    xs, lengths = rows(seed, B, T, 3)
    noise = 100.0 * jax.random.normal(jax.random.key(seed + 1), (EXTRA, B, 3))
    c0 = seq.zero_carry(p, B)
    hs, c = masked_layer(p, c0, xs, seq.length_mask(lengths, T).T)
    xs_long = jnp.concatenate([xs, noise])
    hs_long, c_long = masked_layer(p, c0, xs_long, seq.length_mask(lengths, T + EXTRA).T)
    np.testing.assert_allclose(hs_long[:T], hs, rtol=1e-6, atol=1e-6)
    assert not np.any(hs_long[T:])  # outputs at padding are zero
    for a, b in zip(jax.tree.leaves(c_long), jax.tree.leaves(c)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # The final carry is the state after each row's last real step of the plain layer.
    full_hs, _ = recurrent_layer(p, c0, xs)
    last_h = full_hs[lengths - 1, jnp.arange(B)]
    np.testing.assert_allclose(seq.carry_h(c), last_h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_all_true_mask_equals_the_unmasked_layer(cell):
    p = cells.init_cell(jax.random.key(0), cell, 3, 4, scale=0.5)
    xs = jax.random.normal(jax.random.key(1), (T, B, 3))
    c0 = seq.zero_carry(p, B)
    hs, c = masked_layer(p, c0, xs, jnp.ones((T, B), bool))
    hs_ref, c_ref = recurrent_layer(p, c0, xs)
    np.testing.assert_allclose(hs, hs_ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves(c), jax.tree.leaves(c_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 999))
def test_bidirectional_equals_two_manual_scans_per_row(cell, seed):
    k_f, k_b = jax.random.split(jax.random.key(seed))
    p_f, p_b = (cells.init_cell(k, cell, 3, 4, scale=0.5) for k in (k_f, k_b))
    xs, lengths = rows(seed, B, T, 3)
    hs, (c_f, c_b) = bidirectional(p_f, p_b, xs, lengths)
    assert hs.shape == (T, B, 8)
    for b in range(B):
        n = int(lengths[b])
        x = xs[:n, b:b + 1]  # this row alone, no padding at all
        hf, cf = manual_scan(p_f, x)
        hb, cb = manual_scan(p_b, x[::-1])
        np.testing.assert_allclose(hs[:n, b, :4], hf[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hs[:n, b, 4:], hb[::-1, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(seq.carry_h(c_f)[b], seq.carry_h(cf)[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(seq.carry_h(c_b)[b], seq.carry_h(cb)[0], rtol=1e-5, atol=1e-6)
        assert not np.any(hs[n:, b])


@pytest.mark.parametrize("bi,layers_", [(True, 2), (False, 1)])
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 999))
def test_encoder_stack_ignores_padding_tokens(bi, layers_, seed):
    extra = EXTRA
    cfg = EncoderConfig((7, 3), (4, 2), hidden_dim=5, num_layers=layers_, bidirectional=bi,
                        init_scale=0.5)
    params = seq.init_encoder(jax.random.key(seed), cfg)
    k_t, k_p = jax.random.split(jax.random.key(seed + 1))
    tokens = jax.random.randint(k_t, (2, 4, 2), 0, 3)
    lengths = jnp.array([4, 2])
    junk = jax.random.randint(k_p, (2, extra, 2), 0, 3)
    hs, finals = encode(params, tokens, lengths)
    hs2, finals2 = encode(params, jnp.concatenate([tokens, junk], axis=1), lengths)
    assert hs.shape == (4, 2, cfg.out_dim)
    np.testing.assert_allclose(hs2[:4], hs, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(finals2), jax.tree.leaves(finals)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_encoder_config_rejects_mismatched_features():
    with pytest.raises(ValueError, match="one embed dim per vocabulary"):
        EncoderConfig((7, 3), (4,))
