"""The adaptive softmax: exactly normalised, the full softmax with one cluster, its
chunked training loss equal to the full log-probabilities, gradients by FD."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import adaptive, layers, model
from jax_rnnlm.config import ModelConfig
from support.gradcheck import check_gradient


@st.composite
def layouts(draw):
    V = draw(st.integers(4, 40))
    k = draw(st.integers(1, 3))
    cutoffs = tuple(sorted(draw(st.sets(st.integers(1, V - 1), min_size=1, max_size=k))))
    return V, cutoffs, draw(st.integers(2, 9)), draw(st.sampled_from([1.0, 2.0, 4.0]))


@settings(max_examples=10)
@given(layout=layouts(), N=st.integers(1, 7), seed=st.integers(0, 99))
def test_probabilities_sum_to_one_over_the_vocabulary(layout, N, seed):
    V, cutoffs, H, div = layout
    with jax.enable_x64(True):
        p = jax.tree.map(lambda x: x.astype(jnp.float64),
                         adaptive.init(jax.random.key(seed), H, V, cutoffs, div, 1.0))
        h = jax.random.normal(jax.random.key(seed + 1), (N, H), jnp.float64)
        lp = np.asarray(adaptive.log_probs(p, h, cutoffs, V))
    assert lp.shape == (N, V)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-12)


@settings(max_examples=8)
@given(layout=layouts(), N=st.sampled_from([1, 5, 127, 128, 300]), seed=st.integers(0, 99))
def test_the_chunked_training_loss_equals_the_full_log_probabilities(layout, N, seed):
    """Row counts below, at and above CHUNK, so skipped and partial chunks both occur."""
    V, cutoffs, H, div = layout
    p = adaptive.init(jax.random.key(seed), H, V, cutoffs, div, 1.0)
    h = jax.random.normal(jax.random.key(seed + 1), (N, H))
    t = jax.random.randint(jax.random.key(seed + 2), (N,), 0, V)
    ce = adaptive.cross_entropy(p, h, t, cutoffs, V)
    lp = adaptive.log_probs(p, h, cutoffs, V)
    np.testing.assert_allclose(ce, -np.take_along_axis(np.asarray(lp), np.asarray(t)[:, None],
                                                       axis=1)[:, 0], rtol=2e-5, atol=2e-5)


def test_without_tail_clusters_it_is_the_full_softmax():
    p = adaptive.init(jax.random.key(0), 6, 12, (), 4.0, 1.0)
    h = jax.random.normal(jax.random.key(1), (5, 6))
    t = jnp.arange(5)
    full = jax.nn.log_softmax(layers.affine(h, p["head"]["w"], p["head"]["b"]), axis=-1)
    np.testing.assert_allclose(adaptive.log_probs(p, h, (), 12), full, rtol=1e-6)
    np.testing.assert_allclose(adaptive.cross_entropy(p, h, t, (), 12),
                               layers.softmax_cross_entropy(full, t), rtol=1e-6)


@pytest.mark.parametrize("cutoffs", [(3,), (2, 5, 9)])
def test_gradient_matches_finite_differences(cutoffs):
    V, H = 12, 5
    p = adaptive.init(jax.random.key(2), H, V, cutoffs, 2.0, 1.0)
    h = jax.random.normal(jax.random.key(3), (9, H))
    t = jnp.array([0, 2, 3, 4, 5, 8, 9, 11, 1])  # every cluster hit

    def f(q):
        return jnp.mean(adaptive.cross_entropy(q["out"], q["h"].astype(q["out"]["head"]["w"].dtype),
                                               t, cutoffs, V))
    check_gradient(f, {"out": p, "h": h}, per_leaf=True, eps=1e-5)


def test_a_model_with_the_adaptive_softmax_trains_and_scores_every_word():
    cfg = ModelConfig(vocab_size=20, embed_dim=6, hidden_dim=8, softmax="adaptive",
                      cutoffs=(4, 10), div_value=2.0)
    params = model.init_params(jax.random.key(0), cfg)
    x = jax.random.randint(jax.random.key(1), (3, 7), 0, 20)
    logits, _ = model.forward(params, cfg, model.init_carry(cfg, 3), x)
    np.testing.assert_allclose(jnp.exp(jax.nn.log_softmax(logits)).sum(-1), 1.0, rtol=1e-5)
    ce, _ = model.token_losses(params, cfg, model.init_carry(cfg, 3), x, x)
    np.testing.assert_allclose(ce, -np.take_along_axis(np.asarray(logits), np.asarray(x)[..., None],
                                                       axis=-1)[..., 0], rtol=1e-5)
    g = jax.grad(lambda p: model.loss(p, cfg, model.init_carry(cfg, 3), x, x)[0])(params)
    assert all(np.isfinite(l).all() for l in jax.tree.leaves(g))


@pytest.mark.parametrize("bad, match", [
    (dict(cutoffs=(5, 3)), "strictly increasing"), (dict(cutoffs=(20,)), "strictly increasing"),
    (dict(cutoffs=()), "strictly increasing"), (dict(cutoffs=(3,), tie_weights=True,
                                                    embed_dim=8), "tie_weights")])
def test_bad_adaptive_settings_say_what_is_wrong(bad, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{"vocab_size": 20, "hidden_dim": 8, "softmax": "adaptive", **bad})


def test_the_chunked_gradient_equals_the_gradient_of_the_full_log_probabilities():
    """300 rows: several chunks per tail, most of them skipped at run time."""
    V, H, N, cutoffs = 40, 8, 300, (5, 15)
    p = adaptive.init(jax.random.key(0), H, V, cutoffs, 2.0, 1.0)
    h = jax.random.normal(jax.random.key(1), (N, H))
    t = jax.random.randint(jax.random.key(2), (N,), 0, V)

    def chunked(p, h):
        return jnp.mean(adaptive.cross_entropy(p, h, t, cutoffs, V))

    def full(p, h):
        lp = adaptive.log_probs(p, h, cutoffs, V)
        return -jnp.mean(jnp.take_along_axis(lp, t[:, None], axis=1))
    g1 = jax.grad(chunked, argnums=(0, 1))(p, h)
    g2 = jax.grad(full, argnums=(0, 1))(p, h)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
