"""Cells against their equations, written out independently in NumPy (PyTorch gate order)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import cells


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_step(name, p, carry, x):
    """One step from the textbook equations, with the input projection done per step."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    H = p["w_h"].shape[0]
    blk = lambda w, i: w[..., i * H:(i + 1) * H]
    if name == "rnn":
        h = np.tanh(x @ p["w_x"] + carry @ p["w_h"] + p["b"])
        return h, h
    if name == "lstm":
        h, c = carry
        pre = lambda i: x @ blk(p["w_x"], i) + h @ blk(p["w_h"], i) + blk(p["b"], i)
        i, f, g, o = sigmoid(pre(0)), sigmoid(pre(1)), np.tanh(pre(2)), sigmoid(pre(3))
        c = f * c + i * g
        h = o * np.tanh(c)
        return (h, c), h
    h = carry
    r = sigmoid(x @ blk(p["w_x"], 0) + blk(p["b"], 0) + h @ blk(p["w_h"], 0))
    z = sigmoid(x @ blk(p["w_x"], 1) + blk(p["b"], 1) + h @ blk(p["w_h"], 1))
    n = np.tanh(x @ blk(p["w_x"], 2) + blk(p["b"], 2) + r * (h @ blk(p["w_h"], 2) + p["b_hn"]))
    h = (1 - z) * n + z * h
    return h, h


sizes = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6))


@pytest.mark.parametrize("name", sorted(cells.CELLS))
@settings(max_examples=8, deadline=None)
@given(sizes=sizes, seed=st.integers(0, 2**16))
def test_step_matches_equations(name, sizes, seed):
    B, D, H = sizes
    k_p, k_x, k_h = jax.random.split(jax.random.key(seed), 3)
    p = cells.init_cell(k_p, name, D, H, scale=0.5)
    x = jax.random.normal(k_x, (B, D))
    carry = cells.CELLS[name].zero_carry(B, H, jnp.float32)
    carry = jax.tree.map(lambda z: z + jax.random.normal(k_h, z.shape), carry)
    xw = x @ p["w_x"] + p["b"][None, :]
    got_carry, got_h = cells.CELLS[name].step(p, carry, xw)
    ref_carry, ref_h = reference_step(name, p, jax.tree.map(np.asarray, carry), np.asarray(x))
    np.testing.assert_allclose(got_h, ref_h, rtol=1e-5, atol=1e-5)
    for got, ref in zip(jax.tree.leaves(got_carry), jax.tree.leaves(ref_carry)):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_weights_have_the_documented_layout(name, gates):
    p = cells.init_cell(jax.random.key(0), name, 3, 5, scale=0.1)
    assert p["w_x"].shape == (3, gates * 5)
    assert p["w_h"].shape == (5, gates * 5)
    assert p["b"].shape == (gates * 5,)
    assert cells.cell_name(p) == name
    assert float(jnp.max(jnp.abs(p["w_x"]))) <= 0.1


def test_cell_name_rejects_a_foreign_width():
    with pytest.raises(ValueError, match="not 1, 3 or 4 times H"):
        cells.cell_name({"w_h": jnp.zeros((5, 10))})
