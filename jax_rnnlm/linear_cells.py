"""Cells linear in their state: minGRU, minLSTM and RG-LRU, whose window runs in
parallel over time.

Each is ``h_t = a_t ⊙ h_{t-1} + b_t`` with ``a_t, b_t`` [B, H] computed from x_t
alone, so every matmul of a window is one [T·B, D] product, and the recurrence is
an associative scan over the pairs (a_t, b_t) (O(log T) depth) with the combine
``(a_i, b_i) ∘ (a_j, b_j) = (a_j a_i, a_j b_i + b_j)``, or the same math as a
sequential ``lax.scan`` (``time_loop="scan"``). The carried state enters as
``b_1 += a_1 h_0``, unchanged, so two windows with the carry passed equal one long
window (truncated BPTT). The scan runs in float32 whatever the matmul precision.

  mingru  (G=2, Feng et al. 2024)   k, h~ = x w_x + b;  a = σ(-k),  b = σ(k) h~
  minlstm (G=3, Feng et al. 2024)   f, i, h~ = x w_x + b;  d = softplus(-f) - softplus(-i);
                                    a = f' = σ(-d),  b = i' h~ = σ(d) h~
  rglru   (De et al. 2024, Griffin) u = x w_in + b_in;  r, i = u w_g + b_g;
                                    log a = -8 σ(r) softplus(a_param);
                                    b = sqrt(1 - a²) ⊙ σ(i) ⊙ u

minGRU and minLSTM are the papers' definitions (their Section 3, h~ = Linear(x)),
evaluated in linear space, which at T = 2048 agrees with a sequential loop to ~1e-7
where the paper's log-space scan (cumulative log-sum-exp) drifts to ~1e-4. The paper's
log-space code passes h~ through g(x) = x + 1/2 (x >= 0), σ(x) (x < 0) only so that
log h~ exists; a linear-space scan does not need it, and it costs quality (PTB, one
epoch at lr 10: val 338.65 with g, 284.47 without; experiments/RESULTS.md). minLSTM's
normalised gates f', i' are computed from the log-space difference d for stability. RG-LRU follows recurrentgemma's code: c = 8, ``a_param`` (the paper's
-Λ) initialised so that σ(-a_param) is in [0.9, 0.999] with a² uniform, and the
gradient of sqrt(1 - a²) bounded (at 1000) as its ``sqrt_bound_derivative`` does.
Its gates here are dense (one head), and the input projection w_in [D, H] stands
in for Griffin's linear layer before the recurrence; the rest of Griffin's block
(temporal convolution, GeLU gate branch, output projection, residual MLP) is not
part of the cell.
"""
import functools

import jax
import jax.numpy as jnp

from jax_rnnlm.precision import add_bias, matmul

C_RGLRU = 8.0            # Griffin's c: log a_t = -c r_t softplus(a_param)
MAX_SQRT_GRAD = 1000.0   # recurrentgemma's bound on d sqrt(x) / dx


def _uniform(key, shape, scale):
    return jax.random.uniform(key, shape, jnp.float32, -scale, scale)


# ---------------------------------------------------------------- the cells' coefficients

def init_min(gates):
    def init(key, in_dim, hidden_dim, scale):
        """{"w_x": [D, G·H], "b": [G·H]}, uniform in [-scale, scale]."""
        k_w, k_b = jax.random.split(key)
        return {"w_x": _uniform(k_w, (in_dim, gates * hidden_dim), scale),
                "b": _uniform(k_b, (gates * hidden_dim,), scale)}
    return init


def mingru_coefficients(p, x_ND, dtype):
    """(a, b) [..., H] of minGRU for input rows x [..., D] (e.g. [T, B, D])."""
    k, h_tilde = jnp.split(add_bias(matmul(x_ND, p["w_x"], dtype), p["b"]), 2, axis=-1)
    return jax.nn.sigmoid(-k), jax.nn.sigmoid(k) * h_tilde


def minlstm_coefficients(p, x_ND, dtype):
    """(a, b) [..., H] of minLSTM: f' = f / (f + i) and i' = i / (f + i) from the log-space
    difference d = log σ(i) - log σ(f) (the paper's), so that f' = σ(-d), i' = σ(d)."""
    f, i, h_tilde = jnp.split(add_bias(matmul(x_ND, p["w_x"], dtype), p["b"]), 3, axis=-1)
    d = jax.nn.softplus(-f) - jax.nn.softplus(-i)
    return jax.nn.sigmoid(-d), jax.nn.sigmoid(d) * h_tilde


def init_rglru(key, in_dim, hidden_dim, scale):
    """{"w_in": [D, H], "b_in": [H], "w_g": [H, 2H], "b_g": [2H], "a_param": [H]}: weights
    uniform in [-scale, scale], gate biases zero, a_param as recurrentgemma's
    ``rnn_param_init`` (a = σ(-a_param) in [0.9, 0.999], a² uniform)."""
    k_in, k_g, k_a = jax.random.split(key, 3)
    u = jax.random.uniform(k_a, (hidden_dim,), jnp.float32)
    lo, hi = 0.9 ** 2, 0.999 ** 2
    log_a = 0.5 * jnp.log(u * (hi - lo) + lo)              # log a, a² uniform in [lo, hi]
    return {"w_in": _uniform(k_in, (in_dim, hidden_dim), scale),
            "b_in": jnp.zeros((hidden_dim,), jnp.float32),
            "w_g": _uniform(k_g, (hidden_dim, 2 * hidden_dim), scale),
            "b_g": jnp.zeros((2 * hidden_dim,), jnp.float32),
            "a_param": jnp.log(jnp.expm1(-log_a))}         # softplus(a_param) = -log a


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def sqrt_bound_derivative(x, max_grad):
    """sqrt(x), with the derivative capped at ``max_grad`` (x near 0)."""
    return jnp.sqrt(x)


def _sqrt_fwd(x, max_grad):
    return jnp.sqrt(x), x


def _sqrt_bwd(max_grad, x, g_):
    return (g_ * 0.5 / jnp.sqrt(jnp.maximum(x, 0.25 / max_grad ** 2)),)


sqrt_bound_derivative.defvjp(_sqrt_fwd, _sqrt_bwd)


def rglru_coefficients(p, x_ND, dtype):
    """(a, b) [..., H] of the RG-LRU on the projected input u = x w_in + b_in."""
    u = add_bias(matmul(x_ND, p["w_in"], dtype), p["b_in"])
    r, i = jnp.split(add_bias(matmul(u, p["w_g"], dtype), p["b_g"]), 2, axis=-1)
    rate = jax.nn.softplus(p["a_param"]).reshape((1,) * (r.ndim - 1) + (-1,))
    log_a = -C_RGLRU * jax.nn.sigmoid(r) * rate
    a = jnp.exp(log_a)
    scale = sqrt_bound_derivative(-jnp.expm1(2.0 * log_a), MAX_SQRT_GRAD)  # sqrt(1 - a²)
    return a, scale * (jax.nn.sigmoid(i) * u)


# ---------------------------------------------------------------- the window and the step

def combine(earlier, later):
    """The associative operator of h_t = a_t h_{t-1} + b_t on (a, b) pairs."""
    a_i, b_i = earlier
    a_j, b_j = later
    return a_j * a_i, a_j * b_i + b_j


def window(coefficients, p, h0_BH, xs_TBD, mask_TB=None, dtype="float32",
           time_loop="parallel"):
    """A window of T steps: (hs [T, B, H], h_T [B, H]).

    All T·B rows get their (a, b) from one call of ``coefficients`` (on [T, B, D] as it
    is: merging T with a B split over devices would gather the batch); the carried h0
    enters as b_1 += a_1 h0. A padded step (mask False) keeps the state (a = 1,
    b = 0) and outputs zeros. ``time_loop``: "parallel" (associative scan) or "scan"."""
    acc = jnp.float64 if h0_BH.dtype == jnp.float64 else jnp.float32  # (float64 in tests)
    a_TBH, b_TBH = (v.astype(acc) for v in coefficients(p, xs_TBD, dtype))
    if mask_TB is not None:
        m = mask_TB[:, :, None]
        a_TBH, b_TBH = jnp.where(m, a_TBH, 1.0), jnp.where(m, b_TBH, 0.0)
    b_TBH = b_TBH.at[0].add(a_TBH[0] * h0_BH.astype(acc))
    if time_loop == "parallel":
        _, hs_TBH = jax.lax.associative_scan(combine, (a_TBH, b_TBH), axis=0)
    elif time_loop == "scan":
        def step(h_BH, ab):
            h_BH = ab[0] * h_BH + ab[1]
            return h_BH, h_BH
        _, hs_TBH = jax.lax.scan(step, jnp.zeros_like(h0_BH), (a_TBH, b_TBH))
    else:
        raise ValueError(f"time_loop must be parallel or scan, got {time_loop!r}")
    out_TBH = hs_TBH if mask_TB is None else jnp.where(mask_TB[:, :, None], hs_TBH, 0.0)
    return out_TBH, hs_TBH[-1]


def step(coefficients, p, h_BH, x_BD, dtype="float32"):
    """One time step (generation, batch-1 scoring): (h [B, H], h [B, H])."""
    a_BH, b_BH = coefficients(p, x_BD, dtype)
    h_BH = a_BH * h_BH + b_BH
    return h_BH, h_BH
