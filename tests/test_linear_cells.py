"""The cells linear in their state (mingru, minlstm, rglru): the associative scan, the
sequential scan and a Python loop of the cell's step agree, in outputs, carry and
gradients; finite differences; truncated-BPTT windows; long windows; bf16; generation."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import cells, layers, linear_cells, model
from jax_rnnlm.config import ModelConfig
from support.gradcheck import check_gradient
from support.hlo import dot_operand_dtypes
from support.trees import assert_trees_close

LINEAR = sorted(name for name, c in cells.CELLS.items() if c.parallel)


def loop_of_steps(cell, p, h0, xs_TBD):
    """The window written plainly: a Python loop of the cell's one-step update."""
    h, outs = h0, []
    for x_BD in xs_TBD:
        h, out = cells.CELLS[cell].step(p, h, x_BD)
        outs.append(out)
    return jnp.stack(outs), h


@functools.cache
def stack_outputs(cell, time_loop, layers_n):
    """Jitted (hs of the last layer, final carries) of a stack of ``layers_n`` layers, or
    of the loop of steps (time_loop "loop"), and the gradient of a fixed objective."""
    def run(ps, h0s, xs):
        carries = []
        for p, h0 in zip(ps, h0s):
            if time_loop == "loop":
                xs, h = loop_of_steps(cell, p, h0, xs)
            else:
                xs, h = layers.recurrent_layer(cell, p, h0, xs, time_loop=time_loop)
            carries.append(h)
        return xs, carries

    def objective(ps, h0s, xs, w):
        hs, carries = run(ps, h0s, xs)
        return jnp.sum(hs * w) + sum(jnp.sum(jnp.sin(c)) for c in carries)
    return jax.jit(run), jax.jit(jax.grad(objective, argnums=(0, 1, 2)))


@pytest.mark.parametrize("cell", LINEAR)
@settings(max_examples=6)
@given(B=st.integers(1, 3), T=st.sampled_from([1, 2, 5, 8]), H=st.integers(1, 5),
       n_layers=st.integers(1, 2), seed=st.integers(0, 999))
def test_parallel_equals_sequential_equals_a_loop_of_steps_in_float64(cell, B, T, H, n_layers,
                                                                     seed):
    ks = jax.random.split(jax.random.key(seed), 2 * n_layers + 2)
    D = 3
    ps = [cells.init_cell(ks[i], cell, D if i == 0 else H, H, scale=0.5)
          for i in range(n_layers)]
    h0s = [jax.random.uniform(ks[n_layers + i], (B, H)) for i in range(n_layers)]
    xs = jax.random.normal(ks[-2], (T, B, D))
    w = jax.random.normal(ks[-1], (T, B, H))
    args = jax.tree.map(lambda a: np.asarray(a, np.float64), (ps, h0s, xs))
    with jax.enable_x64(True):
        results = {loop: stack_outputs(cell, loop, n_layers) for loop in
                   ("parallel", "scan", "loop")}
        outs = {k: run(*args) for k, (run, _) in results.items()}
        grads = {k: grad(*args, np.asarray(w, np.float64)) for k, (_, grad) in results.items()}
    for k in ("parallel", "scan"):
        assert_trees_close(outs[k], outs["loop"], rtol=1e-10, atol=1e-12)
        assert_trees_close(grads[k], grads["loop"], rtol=1e-9, atol=1e-12)


def lm(cell, **kw):
    return ModelConfig(**{**dict(vocab_size=13, embed_dim=5, hidden_dim=6, num_layers=2,
                                 cell=cell, init_scale=0.5), **kw})


@pytest.mark.parametrize("time_loop", ["parallel", "scan"])
@pytest.mark.parametrize("cell", LINEAR)
def test_gradient_matches_finite_differences_in_float64(cell, time_loop):
    cfg = lm(cell, time_loop=time_loop)
    params = model.init_params(jax.random.key(1), cfg)
    tokens = jax.random.randint(jax.random.key(2), (2, 7), 0, 13)
    carry = [jnp.full((2, h), 0.3) for h in cfg.layer_dims]

    def loss(p):
        c = jax.tree.map(lambda x: x.astype(jnp.float64), carry)
        return model.loss(p, cfg, c, tokens[:, :-1], tokens[:, 1:])[0]
    check_gradient(loss, params, per_leaf=True, rtol=1e-5)


@pytest.mark.parametrize("cell", LINEAR)
@settings(max_examples=4)
@given(T=st.integers(1, 6), seed=st.integers(0, 999))
def test_two_windows_with_the_carry_passed_equal_one_window_of_2T(cell, T, seed):
    cfg = lm(cell)
    params = model.init_params(jax.random.key(seed), cfg)
    tokens = jax.random.randint(jax.random.key(seed + 1), (3, 2 * T), 0, 13)
    carry = model.init_carry(cfg, 3)
    whole, c_whole = model.forward(params, cfg, carry, tokens)
    first, c_mid = model.forward(params, cfg, carry, tokens[:, :T])
    second, c_end = model.forward(params, cfg, c_mid, tokens[:, T:])
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), whole,
                               rtol=2e-5, atol=2e-5)
    assert_trees_close(c_end, c_whole, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("cell", LINEAR)
def test_jit_equals_no_jit(cell):
    cfg = lm(cell)
    params = model.init_params(jax.random.key(0), cfg)
    tokens = jax.random.randint(jax.random.key(1), (2, 9), 0, 13)
    carry = model.init_carry(cfg, 2)
    eager = model.loss(params, cfg, carry, tokens[:, :-1], tokens[:, 1:])
    jitted = jax.jit(model.loss, static_argnums=1)(params, cfg, carry, tokens[:, :-1],
                                                     tokens[:, 1:])
    assert_trees_close(jitted, eager, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("cell", LINEAR)
def test_a_window_of_2048_steps_stays_finite_and_matches_the_sequential_scan(cell, dtype):
    cfg = lm(cell, dtype=dtype, hidden_dim=16, embed_dim=16, num_layers=1, init_scale=0.3)
    params = model.init_params(jax.random.key(0), cfg)
    tokens = jax.random.randint(jax.random.key(1), (2, 2049), 0, 13)
    carry = model.init_carry(cfg, 2)
    fwd = jax.jit(model.forward, static_argnums=1)
    (logits, c) = fwd(params, cfg, carry, tokens)
    assert np.isfinite(np.asarray(logits)).all() and np.isfinite(np.asarray(c[0])).all()
    seq_logits, _ = fwd(params, lm(cell, dtype=dtype, hidden_dim=16, embed_dim=16,
                                   num_layers=1, init_scale=0.3, time_loop="scan"),
                        carry, tokens)
    tol = 1e-4 if dtype == "float32" else 2e-3  # bf16: h rounded before the output matmul
    np.testing.assert_allclose(logits, seq_logits, rtol=tol, atol=tol)
    grads = jax.jit(jax.grad(lambda p: model.loss(p, cfg, carry, tokens[:, :-1],
                                                  tokens[:, 1:])[0]))(params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("cell", LINEAR)
def test_bfloat16_is_really_bfloat16_in_the_compiled_cell(cell):
    p = cells.init_cell(jax.random.key(0), cell, 4, 6, scale=0.3)
    xs, h0 = jnp.ones((5, 2, 4)), jnp.zeros((2, 6))
    dots = dot_operand_dtypes(
        lambda p, h, x: layers.recurrent_layer(cell, p, h, x, dtype="bfloat16"), p, h0, xs)
    assert dots and all(d == ("bf16", "bf16") for d in dots), dots


@pytest.mark.parametrize("cell", LINEAR)
def test_generation_one_token_at_a_time_reproduces_the_window(cell):
    """generate.sample feeds one token per call of model.forward: token by token, the
    logits and carry equal those of the whole window."""
    cfg = lm(cell)
    params = model.init_params(jax.random.key(3), cfg)
    tokens = jax.random.randint(jax.random.key(4), (2, 6), 0, 13)
    carry = model.init_carry(cfg, 2)
    whole, c_whole = model.forward(params, cfg, carry, tokens)
    c, steps = carry, []
    for t in range(tokens.shape[1]):
        logits, c = model.forward(params, cfg, c, tokens[:, t:t + 1])
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), whole, rtol=1e-5, atol=1e-6)
    assert_trees_close(c, c_whole, rtol=1e-5, atol=1e-6)


def test_params_of_one_cell_run_as_another_are_refused():
    params = model.init_params(jax.random.key(0), lm("mingru"))
    tokens = jnp.zeros((1, 3), jnp.int32)
    for other in ("minlstm", "gru", "rglru"):
        cfg = lm(other)
        with pytest.raises(ValueError, match="trained with another --cell"):
            model.forward(params, cfg, model.init_carry(cfg, 1), tokens)


def test_rglru_starts_with_decays_in_the_griffin_range_and_bounds_the_sqrt_gradient():
    p = cells.init_cell(jax.random.key(0), "rglru", 4, 1000, scale=0.1)
    a = jax.nn.sigmoid(-p["a_param"])
    assert 0.9 - 1e-6 <= float(a.min()) and float(a.max()) <= 0.999 + 1e-6
    grad = jax.grad(lambda x: linear_cells.sqrt_bound_derivative(x, 1000.0))(0.0)
    assert float(grad) == pytest.approx(1000.0)
    assert float(jax.grad(lambda x: linear_cells.sqrt_bound_derivative(x, 1000.0))(0.25)) == 1.0


def test_weight_drop_is_refused_for_cells_without_recurrent_weights():
    with pytest.raises(ValueError, match="has none of"):
        lm("mingru", weight_drop=0.5)
