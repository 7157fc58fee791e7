"""Matmul precision: float32, or bfloat16 operands with float32 accumulation.

Every matmul of the models goes through ``matmul`` (forward) or ``contract`` /
``contract_rows`` (the backward products, also written by hand in ``layers``).
With ``dtype`` float32 they are plain products. With bfloat16 the operands are
rounded to bf16 and the product accumulates in fp32 (mixed precision): params,
carries, gradients and everything elementwise stay fp32.
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

    The backward pass is written out (a custom VJP): for bfloat16, because
    autodiff of a mixed dot would multiply the fp32 cotangent in fp32, and in both
    precisions so that the weight gradient is ``contract_rows``. Gradients come
    back fp32, so scans accumulate them in fp32.
    """
    return _matmul(x, w, jnp.dtype(dtype).name)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(x, w, dtype):
    return _matmul_fwd(x, w, dtype)[0]


def _matmul_fwd(x, w, dtype):
    if is_fp32(dtype):
        return x @ w, (x, w)
    x_lo, w_lo = x.astype(dtype), w.astype(dtype)
    return jnp.matmul(x_lo, w_lo, preferred_element_type=jnp.float32), (x_lo, w_lo)


def _matmul_bwd(dtype, res, g):
    x, w = res
    dx = contract(g, w, g.ndim - 1, 1, dtype)
    dw = contract_rows(x, g, dtype)
    if is_fp32(dtype):  # the residuals are the inputs: keep their dtype (float64 checks)
        return dx.astype(x.dtype), dw.astype(w.dtype)
    return dx, dw


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def contract(a, b, a_axis, b_axis, dtype="float32"):
    """Sum over a's ``a_axis`` against b's ``b_axis`` (an axis or a tuple of axes; the
    other axes in order).

    The backward products: ``contract(g, w, -1, 1)`` is g @ w.T and
    ``contract(x, g, 0, 0)`` is x.T @ g. Operands are rounded to ``dtype`` as in
    ``matmul``. Spelled as one dot_general, not with ``.T``: XLA's CPU backend
    keeps ``g @ w.T`` a bf16 product only in this form (it upcasts the other to fp32).
    """
    dims = ((_axes(a_axis, a.ndim), _axes(b_axis, b.ndim)), ((), ()))
    if is_fp32(dtype):
        return jax.lax.dot_general(a, b, dims)
    return jax.lax.dot_general(a.astype(dtype), b.astype(dtype), dims,
                               preferred_element_type=jnp.float32)


def _axes(axis, ndim):
    return tuple(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,)))


def contract_rows(x_NI, g_NO, dtype="float32"):
    """x.T @ g summed over every leading axis: [..., I], [..., O] -> float32 [I, O], the
    weight gradient of x @ w.

    The leading axes are contracted as they are, not merged by a reshape: merging
    [T, B] rows with B split over devices is no block of rows per device, so XLA would
    gather the whole batch on every device (``jax-rnnlm compile`` counted 6 such
    all-gathers per LSTM step before).

    On XLA's CPU backend a product over the leading axes misses the fast matmul
    path (YNNPACK): it runs at about a third of its speed in bf16 and two thirds in
    fp32. When the output is at least twice as wide as the input (the output
    layer's [H, V]; lstm and gru weights [·, G·H]), x.T is first written out as
    [I, N] by an identity product (exact; it costs I/O of the main product), and
    the main product then takes the plain [I, N] @ [N, O] form.
    """
    rows = tuple(range(x_NI.ndim - 1))

    def direct(x, g):
        return contract(x, g, rows, rows, dtype)

    def transposed_first(x, g):
        low = x.dtype if is_fp32(dtype) else jnp.dtype(dtype)  # fp32 keeps float64 inputs
        x_IN = jax.lax.dot_general(jnp.eye(x.shape[-1], dtype=low), x.astype(low),
                                   (((1,), (len(rows),)), ((), ())), preferred_element_type=low)
        return jax.lax.dot_general(x_IN, g.astype(low),
                                   ((tuple(r + 1 for r in rows), rows), ((), ())),
                                   preferred_element_type=low if is_fp32(dtype) else jnp.float32)

    if g_NO.shape[-1] < 2 * x_NI.shape[-1]:
        return direct(x_NI, g_NO)
    # Chosen when the program is lowered for its platform, not by the host's default
    # backend: a program compiled here for a TPU (aot.py) must not take the CPU form.
    return jax.lax.platform_dependent(x_NI, g_NO, cpu=transposed_first, default=direct)


def add_bias(x, b):
    """x [..., O] + b [O], broadcast explicitly (the tests forbid implicit rank promotion)."""
    return x + b.reshape((1,) * (x.ndim - 1) + b.shape)


def round_to(x, dtype):
    """``x`` rounded to ``dtype`` and back, for elementwise products that must see the
    same numbers as a low-precision matmul of the same operands."""
    return x if is_fp32(dtype) else x.astype(dtype).astype(x.dtype)
