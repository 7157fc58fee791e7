"""Gradient check shared by the tests of the sequence heads."""
import jax
import jax.numpy as jnp
import numpy as np


def directional_check(loss, params32, seed=0, eps=1e-6):
    """In float64: gradient · v against the central difference of ``loss`` along a random v.

    One jitted function computes both, and params and v come in as numpy float64,
    so no eager op has to be compiled a second time for x64.
    """
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), params32)
    v = jax.tree.map(lambda x: rng.standard_normal(x.shape), params)

    @jax.jit
    def both(p, d):
        g = jax.grad(loss)(p)
        analytic = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(d)))
        shift = lambda s: jax.tree.map(lambda x, y: x + s * y, p, d)
        return analytic, (loss(shift(eps)) - loss(shift(-eps))) / (2 * eps)

    with jax.enable_x64(True):
        analytic, numeric = (float(x) for x in both(params, v))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    assert abs(analytic) > 1e-6  # the check must have something to compare
