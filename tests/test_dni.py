"""Synthetic gradients (DNI): exact with an oracle, the bootstrapped target against finite
differences, no effect at scale 0, jit = no-jit, training and resuming with it on."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import dni, model, optim, step, train
from jax_rnnlm.config import DNIConfig, ModelConfig, TrainConfig
from support.trees import assert_trees_close, assert_trees_equal


def tiny(cell, V=9, H=4, L=2):
    return ModelConfig(vocab_size=V, embed_dim=3, hidden_dim=H, num_layers=L, cell=cell,
                       init_scale=0.5)


def to64(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def windows(seed, B, T, V):
    ids = jax.random.randint(jax.random.key(seed), (B, 2 * T + 1), 0, V)
    return ids[:, :T], ids[:, 1:T + 1], ids[:, T:2 * T], ids[:, T + 1:2 * T + 1]


def random_carry(cfg, B, seed):
    return jax.tree.map(lambda z: 0.5 * jax.random.normal(jax.random.key(seed), z.shape),
                        model.init_carry(cfg, B))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@settings(max_examples=2)
@given(B=st.integers(1, 3), T=st.integers(1, 4), seed=st.integers(0, 1000))
def test_an_oracle_synthetic_gradient_makes_two_windows_full_bptt(cell, B, T, seed):
    """λ = 1 and SG(c_1) = the true dL_2/dc_1: the two windows' DNI gradients sum to the
    full-BPTT gradient of L_1 + L_2 over the 2T steps (float64)."""
    cfg = tiny(cell)
    x1, y1, x2, y2 = windows(seed, B, T, cfg.vocab_size)
    with jax.enable_x64(True):
        params = to64(model.init_params(jax.random.key(seed), cfg))
        c0 = to64(random_carry(cfg, B, seed + 1))
        _, c1 = model.loss(params, cfg, c0, x1, y1)
        oracle = jax.grad(lambda c: model.loss(params, cfg, c, x2, y2)[0])(c1)
        zero = lambda c: jax.tree.map(jnp.zeros_like, c)
        g1 = jax.grad(lambda p: dni.window_objective(p, cfg, c0, x1, y1, lambda c: oracle)[0])(
            params)
        g2 = jax.grad(lambda p: dni.window_objective(p, cfg, jax.lax.stop_gradient(c1), x2, y2,
                                                     zero)[0])(params)

        def full(p):
            l1, c = model.loss(p, cfg, c0, x1, y1)
            return l1 + model.loss(p, cfg, c, x2, y2)[0]
        assert_trees_close(jax.tree.map(jnp.add, g1, g2), jax.grad(full)(params), rtol=1e-9,
                           atol=1e-12)


@pytest.mark.parametrize("cell, discount", [("lstm", None), ("gru", None), ("lstm", 0.2),
                                             ("gru", 0.0)])
def test_the_bootstrapped_target_equals_finite_differences(cell, discount):
    """g_k = dJ_γ/dc_k with the synthetic gradient of c_{k+1} held fixed, against central
    differences of c -> L(c) + <γ SG(c_{k+1}) / BT, c_out(c)> along random directions
    (float64; γ = λ when no discount is set). The param grads take in λ·SG whatever γ."""
    cfg, B, T = tiny(cell), 2, 3
    dni_cfg = DNIConfig("mlp", scale=0.7, hidden=5, init_scale=0.5, discount=discount)
    gamma = dni_cfg.scale if discount is None else discount
    x, y, _, _ = windows(3, B, T, cfg.vocab_size)
    with jax.enable_x64(True):
        params = to64(model.init_params(jax.random.key(0), cfg))
        sg = to64(dni.init_sg(jax.random.key(1), dni_cfg, dni.carry_width(cfg)))
        sg["out"]["w"] = np.asarray(jax.random.normal(jax.random.key(2), sg["out"]["w"].shape),
                                    np.float64)  # a module that predicts something
        c0 = to64(random_carry(cfg, B, 4))
        *_, sg_cos = dni.dni_step_grads(params, sg, dni_cfg, cfg, c0, x, y)
        _, c1, grads, target = dni.window_grads(params, sg, dni_cfg, cfg, c0, x, y)
        delta0 = jax.tree.map(lambda d: gamma * d / x.size, dni.predict(sg, c1))
        scaled = jax.tree.map(lambda d: dni_cfg.scale * d / x.size, dni.predict(sg, c1))
        expected = jax.grad(lambda p: dni.window_objective(p, cfg, c0, x, y,
                                                           lambda c: scaled)[0])(params)
        assert_trees_close(grads, expected, rtol=1e-9, atol=1e-12)

        def frozen(c):
            loss, c_out = model.loss(params, cfg, c, x, y)
            return loss + dni.inner(delta0, c_out)
        for seed in range(3):
            v = jax.tree.map(lambda z: np.asarray(jax.random.normal(jax.random.key(10 + seed),
                                                                    z.shape), np.float64), c0)
            eps = 1e-6
            shift = lambda s: jax.tree.map(lambda a, d: a + s * eps * d, c0, v)
            fd = (frozen(shift(1.0)) - frozen(shift(-1.0))) / (2 * eps)
            np.testing.assert_allclose(dni.inner(target, v), fd, rtol=1e-7, atol=1e-10)
        assert abs(float(dni.inner(target, target))) > 0 and -1 <= float(sg_cos) <= 1


def run_windows(dni_cfg, n_calls=3, seed=0, jit=True):
    cfg = tiny("lstm")
    tx = optim.make_optimizer("sgd", 1.0, 0.5)
    state = step.init_state(jax.random.key(seed), cfg, tx, 3, dni_cfg)
    streams = jax.random.randint(jax.random.key(7), (3, 31), 0, cfg.vocab_size)
    run = (step.jit_train_windows(cfg, tx, 5, dni_cfg) if jit else
           lambda s, x, w: step.train_windows(s, x, w, cfg=cfg, tx=tx, bptt=5, dni_cfg=dni_cfg))
    metrics = []
    for k in range(n_calls):
        state, m = run(state, streams, jnp.array([0, 5], jnp.int32) + 10 * k)
        metrics.append(m)
    return state, metrics


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_scale_zero_is_bitwise_plain_truncated_bptt(kind):
    plain, m_plain = run_windows(None)
    with_sg, m_sg = run_windows(DNIConfig(kind, scale=0.0))
    assert_trees_equal((with_sg.params, with_sg.carry), (plain.params, plain.carry))
    np.testing.assert_array_equal(np.concatenate([m["loss"] for m in m_sg]),
                                  np.concatenate([m["loss"] for m in m_plain]))
    assert float(jnp.abs(with_sg.sg["out"]["w"]).max()) > 0  # the module itself trained


def test_a_zero_initialised_module_starts_as_plain_truncated_bptt():
    """The first window: the SG's last layer is zero, so nothing is added yet."""
    cfg = tiny("lstm")
    tx = optim.make_optimizer("sgd", 1.0, 0.5)
    s0 = step.init_state(jax.random.key(0), cfg, tx, 3, DNIConfig("mlp", scale=1.0))
    x = jax.random.randint(jax.random.key(7), (3, 6), 0, cfg.vocab_size)
    train_step = jax.jit(step.train_step, static_argnames=("cfg", "tx", "dni_cfg"))
    one_sg, _ = train_step(s0, x[:, :5], x[:, 1:], cfg=cfg, tx=tx,
                           dni_cfg=DNIConfig("mlp", scale=1.0))
    one_plain, _ = train_step(step.init_state(jax.random.key(0), cfg, tx, 3), x[:, :5],
                              x[:, 1:], cfg=cfg, tx=tx)
    assert_trees_close((one_sg.params, one_sg.carry), (one_plain.params, one_plain.carry),
                       rtol=1e-6, atol=1e-7)


def test_jit_equals_no_jit():
    dni_cfg = DNIConfig("mlp", scale=0.5, hidden=8)
    a, ma = run_windows(dni_cfg, n_calls=2)
    b, mb = run_windows(dni_cfg, n_calls=2, jit=False)
    assert_trees_close((a.params, a.sg, a.carry), (b.params, b.sg, b.carry), rtol=1e-5,
                       atol=1e-6)
    np.testing.assert_allclose(np.concatenate([m["sg_loss"] for m in ma]),
                               np.concatenate([m["sg_loss"] for m in mb]), rtol=1e-5)


def test_training_with_synthetic_gradients_logs_them_and_learns(tmp_path, repetitive_corpus):
    corpus = repetitive_corpus
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=16, hidden_dim=16, cell="lstm")
    cfg = TrainConfig(batch_size=4, bptt=4, optimizer="adam", lr=0.02, clip=5.0, epochs=2,
                      log_every=20, synthetic_gradients="mlp", sg_scale=0.5, sg_lr=1e-3)
    summary = train.fit(mcfg, cfg, corpus, tmp_path / "run", echo=lambda s: None)
    assert summary["val_ppl"] < 1.5
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").open()]
    logged = [l for l in lines if "sg_loss" in l]
    assert logged and all(np.isfinite(l["sg_loss"]) and -1 <= l["sg_cos"] <= 1 for l in logged)


@pytest.mark.parametrize("bad, message", [
    (dict(synthetic_gradients="rnn"), "synthetic_gradients must be one of"),
    (dict(synthetic_gradients="linear", sg_scale=1.5), r"sg_scale must be in \[0, 1\]"),
    (dict(synthetic_gradients="mlp", sg_lr=0.0), "sg_lr must be > 0"),
    (dict(synthetic_gradients="linear", sg_discount=-0.1), r"sg_discount must be in \[0, 1\]"),
])
def test_bad_synthetic_gradient_settings_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad).dni
