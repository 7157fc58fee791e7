"""Matmul precision: float32, or bfloat16 operands with float32 accumulation.

Every matmul of the models goes through ``matmul`` (forward) or ``contract``
(the backward products written by hand in ``layers``). With ``dtype`` float32
they are plain products. With bfloat16 the operands are rounded to bf16 and the
product accumulates in fp32 (mixed precision): params, carries, gradients and
everything elementwise stay fp32.
"""
import functools

import jax
import jax.numpy as jnp

DTYPES = ("float32", "bfloat16")


def is_fp32(dtype):
    return jnp.dtype(dtype) == jnp.float32


def matmul(x, w, dtype="float32"):
    """x [..., I] @ w [I, O] -> float32 [..., O], with operands rounded to ``dtype``
    (I, O: any input and output widths).

    For bfloat16 the forward and both backward products take bf16 operands and
    accumulate in fp32 (a custom VJP, because autodiff of a mixed dot would
    multiply the fp32 cotangent in fp32); the gradients come back fp32, so
    scans accumulate them in fp32.
    """
    if is_fp32(dtype):
        return x @ w
    return _mixed_matmul(x, w, jnp.dtype(dtype).name)


def contract(a, b, a_axis, b_axis, dtype="float32"):
    """Sum over a's ``a_axis`` against b's ``b_axis`` (the other axes in order).

    The backward products: ``contract(g, w, -1, 1)`` is g @ w.T and
    ``contract(x, g, 0, 0)`` is x.T @ g. Operands are rounded to ``dtype`` as in
    ``matmul``. Spelled as one dot_general, not with ``.T``: XLA's CPU backend
    keeps ``g @ w.T`` a bf16 product only in this form (it upcasts the other to fp32).
    """
    a_axis, b_axis = a_axis % a.ndim, b_axis % b.ndim
    dims = (((a_axis,), (b_axis,)), ((), ()))
    if is_fp32(dtype):
        return jax.lax.dot_general(a, b, dims)
    return jax.lax.dot_general(a.astype(dtype), b.astype(dtype), dims,
                               preferred_element_type=jnp.float32)


def round_to(x, dtype):
    """``x`` rounded to ``dtype`` and back, for elementwise products that must see the
    same numbers as a low-precision matmul of the same operands."""
    return x if is_fp32(dtype) else x.astype(dtype).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _mixed_matmul(x, w, dtype):
    return _mixed_fwd(x, w, dtype)[0]


def _mixed_fwd(x, w, dtype):
    x_lo, w_lo = x.astype(dtype), w.astype(dtype)
    return jnp.matmul(x_lo, w_lo, preferred_element_type=jnp.float32), (x_lo, w_lo)


def _mixed_bwd(dtype, res, g):
    x_lo, w_lo = res
    dx = contract(g, w_lo, g.ndim - 1, 1, dtype)
    dw = contract(x_lo.reshape(-1, x_lo.shape[-1]), g.reshape(-1, g.shape[-1]), 0, 0, dtype)
    return dx, dw


_mixed_matmul.defvjp(_mixed_fwd, _mixed_bwd)
