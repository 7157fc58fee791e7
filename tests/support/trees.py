"""Comparing pytrees: the structure first, then every leaf (zip alone would stop at the
shorter list of leaves and let a missing or extra tensor pass)."""
import jax
import numpy as np


def leaves(tree):
    """The leaves of a pytree as numpy arrays; PRNG keys as their raw uint32 data."""
    def raw(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(x))
        return np.asarray(x)
    return [raw(x) for x in jax.tree.leaves(tree)]


def assert_trees_close(actual, expected, rtol=1e-6, atol=0.0):
    """Same tree structure, and every pair of leaves allclose."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), (
        f"tree structures differ:\n{jax.tree.structure(actual)}\n{jax.tree.structure(expected)}")
    for i, (a, b) in enumerate(zip(leaves(actual), leaves(expected), strict=True)):
        assert a.shape == b.shape, f"leaf {i}: shape {a.shape} != {b.shape}"
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=rtol, atol=atol, err_msg=f"leaf {i}")


def assert_trees_equal(actual, expected):
    """Same tree structure, and every pair of leaves bitwise equal."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), (
        f"tree structures differ:\n{jax.tree.structure(actual)}\n{jax.tree.structure(expected)}")
    for i, (a, b) in enumerate(zip(leaves(actual), leaves(expected), strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"leaf {i}")


def assert_leaf_lists_close(actual, expected, rtol=1e-6, atol=1e-7):
    """Two lists of arrays (e.g. leaves saved by a worker process): same length, allclose."""
    assert len(actual) == len(expected), f"{len(actual)} leaves != {len(expected)}"
    for i, (a, b) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"leaf {i}")
