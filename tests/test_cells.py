"""Cells against their equations, written out independently in NumPy (PyTorch gate order),
and against code we did not write: flax.linen's SimpleCell, LSTMCell and GRUCell."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import cells, layers
from support.trees import assert_trees_close


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


@pytest.mark.parametrize("name", sorted(n for n, c in cells.CELLS.items() if not c.parallel))
@settings(max_examples=8)
@given(sizes=sizes, seed=st.integers(0, 2**16))
def test_step_matches_equations(name, sizes, seed):
    B, D, H = sizes
    k_p, k_x, k_h = jax.random.split(jax.random.key(seed), 3)
    p = cells.init_cell(k_p, name, D, H, scale=0.5)
    x = jax.random.normal(k_x, (B, D))
    carry = cells.CELLS[name].zero_carry(B, H, jnp.float32)
    carry = jax.tree.map(lambda z: z + jax.random.normal(k_h, z.shape), carry)
    got = cells.CELLS[name].step(p, carry, x)
    ref = reference_step(name, p, jax.tree.map(np.asarray, carry), np.asarray(x))
    assert_trees_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_weights_have_the_documented_layout(name, gates):
    p = cells.init_cell(jax.random.key(0), name, 3, 5, scale=0.1)
    assert p["w_x"].shape == (3, gates * 5)
    assert p["w_h"].shape == (5, gates * 5)
    assert p["b"].shape == (gates * 5,)
    assert cells.hidden_width(name, p) == 5
    assert float(jnp.max(jnp.abs(p["w_x"]))) <= 0.1


def test_every_cell_refuses_the_params_of_every_other_cell():
    """A cell is chosen by name, never read off shapes: each cell's params at H = 4 are
    refused by every other cell (and at another width by itself), with a clear error."""
    for mine in cells.CELLS:
        p = cells.init_cell(jax.random.key(0), mine, 3, 4, scale=0.1)
        cells.check_params(mine, p, 4)
        with pytest.raises(ValueError, match=f"not those of a '{mine}' cell of width 5"):
            cells.check_params(mine, p, 5)
        for other in set(cells.CELLS) - {mine}:
            with pytest.raises(ValueError, match="were they trained with another --cell"):
                cells.check_params(other, p, 4)


FLAX_CELLS = {"rnn": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


def to_flax(name, p):
    """Our weights in Flax's layout: one Dense per gate, input and hidden side apart.

    Flax keeps one bias per gate, on the input side (SimpleCell, GRUCell's r, z, n)
    or on the hidden side (LSTMCell); GRUCell's candidate has its second bias on the
    hidden side, which is our b_hn.
    """
    H = p["w_h"].shape[0]
    blk = lambda w, i: w[..., i * H:(i + 1) * H]
    dense = lambda w, b=None: {"kernel": w} if b is None else {"kernel": w, "bias": b}
    if name == "rnn":
        return {"i": dense(p["w_x"], p["b"]), "h": dense(p["w_h"])}
    if name == "lstm":
        return {**{f"i{g}": dense(blk(p["w_x"], k)) for k, g in enumerate("ifgo")},
                **{f"h{g}": dense(blk(p["w_h"], k), blk(p["b"], k)) for k, g in enumerate("ifgo")}}
    return {**{f"i{g}": dense(blk(p["w_x"], k), blk(p["b"], k)) for k, g in enumerate("rzn")},
            "hr": dense(blk(p["w_h"], 0)), "hz": dense(blk(p["w_h"], 1)),
            "hn": dense(blk(p["w_h"], 2), p["b_hn"])}


def flax_scan(name, p, carry, xs_TBD):
    """Flax's cell applied step by step (our carry (h, c) is Flax's (c, h))."""
    cell, params = FLAX_CELLS[name](features=p["w_h"].shape[0]), {"params": to_flax(name, p)}
    c = carry[::-1] if name == "lstm" else carry
    outs = []
    for x_BD in xs_TBD:
        c, h = cell.apply(params, c, x_BD)
        outs.append(h)
    return jnp.stack(outs), (c[::-1] if name == "lstm" else c)


@pytest.mark.parametrize("name", sorted(n for n, c in cells.CELLS.items() if not c.parallel))
@settings(max_examples=3)
@given(B=st.integers(1, 3), T=st.integers(1, 5), D=st.integers(1, 4), H=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_layer_and_its_gradient_match_flax_cells_with_the_same_weights(name, B, T, D, H, seed):
    ks = jax.random.split(jax.random.key(seed), 5)
    p = cells.init_cell(ks[0], name, D, H, scale=0.5)
    xs = jax.random.normal(ks[1], (T, B, D))
    carry = jax.tree.map(lambda z: jax.random.normal(ks[2], z.shape), cells.zero_carry(name, B, H))
    w_hs, w_c = jax.random.normal(ks[3], (T, B, H)), jax.random.normal(ks[4], (B, H))
    ours = layers.recurrent_layer(name, p, carry, xs)
    theirs = flax_scan(name, p, carry, xs)
    assert_trees_close(ours, theirs, rtol=1e-5, atol=1e-6)

    def objective(run):
        def f(p, carry, xs):
            hs, c = run(name, p, carry, xs)
            return jnp.sum(hs * w_hs) + sum(jnp.sum(leaf * w_c) for leaf in jax.tree.leaves(c))
        return jax.grad(f, argnums=(0, 1, 2))
    assert_trees_close(objective(layers.recurrent_layer)(p, carry, xs),
                       objective(flax_scan)(p, carry, xs), rtol=1e-4, atol=1e-5)
