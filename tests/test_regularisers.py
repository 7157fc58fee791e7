"""The regularisers of the AWD-LSTM recipe: variational (locked) dropout, embedding
dropout, weight drop through the hand-written backward, AR/TAR."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import layers, model
from jax_rnnlm.config import ModelConfig
from support.gradcheck import check_gradient

AWD = dict(dropout=0.4, dropout_input=0.3, dropout_hidden=0.2, variational=True,
           dropout_embed=0.1, weight_drop=0.5, ar=2.0, tar=1.0)


def tiny(cell="lstm", **kw):
    return ModelConfig(vocab_size=11, embed_dim=5, hidden_dim=6, num_layers=2, cell=cell,
                       init_scale=0.3, **kw)


def batch(seed, B=3, T=4, V=11):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return jax.random.randint(k1, (B, T), 0, V), jax.random.randint(k2, (B, T), 0, V)


@settings(max_examples=10)
@given(T=st.integers(1, 6), B=st.integers(1, 4), D=st.integers(1, 5),
       rate=st.floats(0.1, 0.9), seed=st.integers(0, 999))
def test_locked_dropout_draws_one_mask_per_stream_for_all_time_steps(T, B, D, rate, seed):
    out = np.asarray(layers.dropout(jax.random.key(seed), jnp.ones((T, B, D)), rate,
                                    shared_axis=0))
    np.testing.assert_array_equal(out, np.broadcast_to(out[:1], out.shape))
    kept = out[out != 0.0]
    np.testing.assert_allclose(kept, 1.0 / (1.0 - rate), rtol=1e-6)


def test_per_element_dropout_differs_over_time():
    out = np.asarray(layers.dropout(jax.random.key(0), jnp.ones((8, 2, 16)), 0.5))
    assert not (out == out[:1]).all()


@settings(max_examples=10)
@given(seed=st.integers(0, 999), rate=st.floats(0.2, 0.8))
def test_embedding_dropout_drops_every_occurrence_of_a_word_type(seed, rate):
    tokens_TB = jax.random.randint(jax.random.key(seed), (12, 3), 0, 4)  # many repeats
    x = jnp.ones((12, 3, 5))
    out = np.asarray(layers.drop_words(jax.random.key(seed + 1), x, tokens_TB, 4, rate))
    for w in range(4):
        rows = out[np.asarray(tokens_TB) == w]
        if len(rows):
            assert len(np.unique(rows)) == 1, f"type {w} dropped in some places only"
            assert rows[0, 0] == 0.0 or np.isclose(rows[0, 0], 1.0 / (1.0 - rate), rtol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_regularisers_apply_only_in_training(cell):
    """Without a key (evaluation) the AWD settings change nothing; with one and every
    rate and penalty at zero, the loss equals evaluation's bit for bit."""
    x, y = batch(0)
    params = model.init_params(jax.random.key(1), tiny(cell))
    carry = model.init_carry(tiny(cell), 3)
    plain = model.loss(params, tiny(cell), carry, x, y)
    assert model.loss(params, tiny(cell, **AWD), carry, x, y)[0] == plain[0]
    assert model.loss(params, tiny(cell), carry, x, y, key=jax.random.key(2))[0] == plain[0]
    assert model.loss(params, tiny(cell, **AWD), carry, x, y, key=jax.random.key(2))[0] \
        != plain[0]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradient_with_every_regulariser_matches_finite_differences(cell):
    """For a fixed key the masks are constants, so the regularised loss is a smooth
    function of the params: its gradient (through the hand-written backward of the
    time scan, the weight-dropped w_h and the penalties) against float64 FD."""
    cfg = tiny(cell, **AWD)
    x, y = batch(3)

    def f(p):
        carry = jax.tree.map(lambda z: z.astype(p["embed"].dtype), model.init_carry(cfg, 3))
        return model.loss(p, cfg, carry, x, y, key=jax.random.key(5))[0]
    check_gradient(f, model.init_params(jax.random.key(4), cfg), per_leaf=True, eps=1e-5)


def test_weight_drop_zeroes_the_gradient_of_dropped_recurrent_weights():
    """DropConnect on w_h: dL/dw_h = mask / (1 - p) * dL/dw~_h, so about a fraction p of
    its entries get exactly zero gradient; without weight drop, none do."""
    x, y = batch(6, B=4, T=6)

    def zero_fraction(rate):  # H = 32: 4,096 entries, so the fraction is 0.5 +- 0.008
        cfg = dataclasses.replace(tiny(weight_drop=rate), hidden_dim=32)
        g = jax.grad(lambda p: model.loss(p, cfg, model.init_carry(cfg, 4), x, y,
                                          key=jax.random.key(7))[0])(
            model.init_params(jax.random.key(8), cfg))
        return float(np.mean(np.asarray(g["layers"][1]["w_h"]) == 0.0))
    assert zero_fraction(0.0) == 0.0
    assert 0.46 < zero_fraction(0.5) < 0.54


def test_ar_and_tar_add_their_mean_squares_to_the_loss():
    """loss(ar, tar) - loss(none) = ar * mean(h²) of the dropped output + tar *
    mean((h_t - h_{t-1})²) of the output before dropout, from the same masks."""
    base = tiny(dropout=0.3, variational=True)
    cfg = dataclasses.replace(base, ar=2.0, tar=1.5)
    x, y = batch(9, T=5)
    params = model.init_params(jax.random.key(10), cfg)
    carry, key = model.init_carry(cfg, 3), jax.random.key(11)
    raw, h, _ = model.recurrent_stack(params, base, carry, x, key)
    raw, h = np.asarray(raw, np.float64), np.asarray(h, np.float64)
    expected = 2.0 * np.mean(h ** 2) + 1.5 * np.mean((raw[1:] - raw[:-1]) ** 2)
    got = model.loss(params, cfg, carry, x, y, key)[0] - model.loss(params, base, carry, x, y,
                                                                    key)[0]
    np.testing.assert_allclose(float(got), expected, rtol=1e-4)


@pytest.mark.parametrize("field, value", [("dropout_input", 1.0), ("weight_drop", -0.1),
                                          ("dropout_embed", 1.5), ("ar", -1.0)])
def test_bad_regulariser_settings_name_the_setting(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        tiny(**{field: value})


def test_a_narrower_last_layer_ties_to_the_embedding():
    """AWD's shape: 3 layers of H, the last one D wide so its output can be tied."""
    cfg = ModelConfig(vocab_size=11, embed_dim=4, hidden_dim=7, num_layers=3,
                      last_hidden_dim=4, tie_weights=True, init_scale=0.3, **AWD)
    params = model.init_params(jax.random.key(0), cfg)
    assert [p["w_h"].shape for p in params["layers"]] == [(7, 28), (7, 28), (4, 16)]
    assert "w" not in params["out"]
    x, y = batch(1)

    def f(p):
        carry = jax.tree.map(lambda z: z.astype(p["embed"].dtype), model.init_carry(cfg, 3))
        return model.loss(p, cfg, carry, x, y, key=jax.random.key(2))[0]
    check_gradient(f, params, per_leaf=True, eps=1e-5)
    with pytest.raises(ValueError, match="last layer's width"):
        ModelConfig(vocab_size=11, embed_dim=4, hidden_dim=7, tie_weights=True)
