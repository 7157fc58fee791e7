"""The gradient check of the suite: jax.grad against central finite differences in float64."""
import jax
import jax.numpy as jnp
import numpy as np


def check_gradient(loss, params32, seed=0, eps=1e-6, per_leaf=False, rtol=1e-6, atol=1e-9):
    """<grad loss, v> against (loss(p + eps v) - loss(p - eps v)) / (2 eps), in float64.

    ``v`` is one random direction over all params, or with ``per_leaf`` one
    direction per tensor (so a wrong gradient in a small tensor cannot hide in
    the sum). One jitted function computes both sides per direction; params and
    v come in as numpy float64, so nothing eager is compiled twice for x64.
    """
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), params32)
    flat, treedef = jax.tree.flatten(params)
    draw = [rng.standard_normal(x.shape) for x in flat]
    if per_leaf:
        directions = [[d if j == i else np.zeros_like(d) for j, d in enumerate(draw)]
                      for i in range(len(flat))]
    else:
        directions = [draw]

    @jax.jit
    def both(p, d):
        g = jax.grad(loss)(p)
        analytic = sum(jnp.vdot(a, b) for a, b in
                       zip(jax.tree.leaves(g), jax.tree.leaves(d), strict=True))
        shift = lambda s: jax.tree.map(lambda x, y: x + s * y, p, d)
        return analytic, (loss(shift(eps)) - loss(shift(-eps))) / (2 * eps)

    with jax.enable_x64(True):
        for i, d in enumerate(directions):
            analytic, numeric = (float(x) for x in both(params, jax.tree.unflatten(treedef, d)))
            np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol,
                                       err_msg=f"direction {i}")
            assert abs(analytic) > 1e-6, f"direction {i}: nothing to compare"
