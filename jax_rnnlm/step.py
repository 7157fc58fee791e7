"""The pure train step of minibatch truncated BPTT, and evaluation.

``train_step`` advances the state by one window: ``jax.grad`` back-propagates
through the time scan of the window, and the carry leaves the window through
``stop_gradient``, so gradients stop at the window boundary while the hidden
state flows on. ``train_windows`` runs W windows inside one ``lax.scan``, so a
compiled call pays Python dispatch once per W windows and the data stays on
the device. ``evaluate`` scores every target of a split with the carry flowing
through it. Nothing here touches files, the host loop or device placement
(``train`` and ``parallel`` build on it).
"""
import functools
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_rnnlm import data, dni, model
from jax_rnnlm.config import DNIConfig, ModelConfig


@flax.struct.dataclass
class TrainState:
    params: dict       # model params (see model.py)
    opt_state: tuple   # optax state (optim.py); holds the current learning rate
    carry: list        # recurrent state [B, H] per layer, flowing from window to window
    key: jax.Array     # PRNG key for dropout
    step: jax.Array    # train steps done, int32 scalar
    sg: dict | None = None            # synthetic-gradient module (dni.py), or None
    sg_opt_state: tuple | None = None  # its optimizer state


def init_state(key, cfg: ModelConfig, tx, batch_size, dni_cfg: DNIConfig | None = None):
    """Fresh params, optimizer state and a zero carry for B = ``batch_size`` streams,
    and with ``dni_cfg`` a fresh synthetic-gradient module and its optimizer state."""
    k_init, k_drop = jax.random.split(key)
    params = model.init_params(k_init, cfg)
    sg = sg_opt = None
    if dni_cfg is not None:
        sg = dni.init_sg(jax.random.fold_in(key, 1), dni_cfg, dni.carry_width(cfg))
        sg_opt = dni.optimizer(dni_cfg).init(sg)
    return TrainState(params=params, opt_state=tx.init(params),
                      carry=model.init_carry(cfg, batch_size), key=k_drop,
                      step=jnp.zeros((), jnp.int32), sg=sg, sg_opt_state=sg_opt)


def window(streams_BL, start, bptt):
    """(inputs, targets) [B, T] of the window starting at ``start``, sliced on device."""
    xy = jax.lax.dynamic_slice_in_dim(streams_BL, start, bptt + 1, axis=1)
    return xy[:, :-1], xy[:, 1:]


def train_step(state: TrainState, inputs_BT, targets_BT, *, cfg: ModelConfig, tx,
               axis_name=None, dni_cfg: DNIConfig | None = None):
    """One truncated-BPTT step on a window: (state, metrics).

    metrics: {"loss": mean CE of the window, "finite": bool [1 + number of param
    tensors], whether the loss and each gradient tensor (``param_names`` order)
    are finite}. A window with anything non-finite changes neither params,
    optimizer state nor carry, so a bad batch can be skipped, or training
    stopped on a good state.

    With ``dni_cfg`` the window's gradient takes in the synthetic gradient of the
    carry it hands on, and the SG module is trained on its bootstrapped target
    (dni.py); metrics add "sg_loss" and "sg_cos" (cosine of SG(c_k) and its target).

    Under ``jax.pmap``, ``axis_name`` names the device axis: each device holds
    B/n of the streams, draws its own dropout mask, and the loss and gradients
    are averaged over the devices before clipping (see parallel.py).
    """
    key, k_drop = jax.random.split(state.key)
    if axis_name is not None:
        k_drop = jax.random.fold_in(k_drop, jax.lax.axis_index(axis_name))
    if dni_cfg is None:
        (loss, carry), grads = jax.value_and_grad(model.loss, has_aux=True)(
            state.params, cfg, state.carry, inputs_BT, targets_BT, k_drop)
        sg_metrics = sg_grads = {}
    else:
        loss, carry, grads, sg_loss, sg_grads, sg_cos = dni.dni_step_grads(
            state.params, state.sg, dni_cfg, cfg, state.carry, inputs_BT, targets_BT, k_drop)
        sg_metrics = {"sg_loss": sg_loss, "sg_cos": sg_cos}
    if axis_name is not None:  # equal shards, so the mean of means is the global mean
        loss, grads, sg_grads, sg_metrics = jax.lax.pmean((loss, grads, sg_grads, sg_metrics),
                                                          axis_name)
    with jax.named_scope("optimizer"):
        ok_loss = jnp.all(jnp.stack([jnp.isfinite(loss)] + [jnp.isfinite(v) for v in
                                                           sg_metrics.values()]))
        finite = jnp.stack([ok_loss] +
                           [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes an int count into floats
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            sg, sg_opt_state = state.sg, state.sg_opt_state
            if dni_cfg is not None:
                sg_updates, sg_opt_state = dni.optimizer(dni_cfg).update(
                    sg_grads, sg_opt_state, sg)
                sg = optax.apply_updates(sg, sg_updates)
        new = (optax.apply_updates(state.params, updates), opt_state, jax.lax.stop_gradient(carry),
               sg, sg_opt_state)
        old = (state.params, state.opt_state, state.carry, state.sg, state.sg_opt_state)
        params, opt_state, carry, sg, sg_opt_state = jax.tree.map(
            lambda n, o: jnp.where(jnp.all(finite), n, o), new, old)
    state = state.replace(params=params, opt_state=opt_state, carry=carry, key=key,
                          step=state.step + 1, sg=sg, sg_opt_state=sg_opt_state)
    return state, {"loss": loss, "finite": finite, **sg_metrics}


def param_names(params):
    """'/'-joined path of every params leaf, in jax.tree.leaves order (e.g. 'layers/0/w_h')."""
    return ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
            for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def train_windows(state, streams_BL, starts_W, *, cfg: ModelConfig, tx, bptt, axis_name=None,
                  dni_cfg: DNIConfig | None = None):
    """W train steps, one per window start in ``starts_W``: (state, metrics of [W])."""
    def body(st, start):
        return train_step(st, *window(streams_BL, start, bptt), cfg=cfg, tx=tx,
                          axis_name=axis_name, dni_cfg=dni_cfg)
    return jax.lax.scan(body, state, starts_W)


def jit_train_windows(cfg: ModelConfig, tx, bptt, dni_cfg: DNIConfig | None = None):
    """``train_windows`` compiled for one device: (state, streams [B, L], starts [W]) ->
    (state, metrics of [W]); the state is donated."""
    return jax.jit(functools.partial(train_windows, cfg=cfg, tx=tx, bptt=bptt, dni_cfg=dni_cfg),
                   donate_argnums=0)


@functools.partial(jax.jit, static_argnames=("cfg", "bptt"))
def eval_windows(params, cfg: ModelConfig, carry, streams_BL, starts_W, bptt):
    """Summed cross-entropy of each of W windows: (carry, sums [W]), the carry flowing."""
    def body(c, start):
        ce_BT, c = model.token_losses(params, cfg, c, *window(streams_BL, start, bptt))
        return c, jnp.sum(ce_BT)
    return jax.lax.scan(body, carry, starts_W)


def window_parts(L, bptt):
    """[(start offsets [W], window length)] covering the L - 1 targets of streams [B, L]:
    the full windows, then the shorter tail window if there is one."""
    n_full = (L - 1) // bptt
    parts = [(np.arange(n_full, dtype=np.int32) * bptt, bptt)] if n_full else []
    tail = L - 1 - n_full * bptt
    return parts + ([(np.array([n_full * bptt], np.int32), tail)] if tail else [])


def stream_perplexity(params, cfg: ModelConfig, streams_BL, carry, bptt):
    """Perplexity of every target of the streams [B, L] and how many there are.

    The full windows run in one compiled scan, then the shorter tail window.
    ``streams_BL`` and ``carry`` may be placed on devices (sharded on B).
    """
    B, L = streams_BL.shape
    total = 0.0
    for starts, length in window_parts(L, bptt):
        carry, sums = eval_windows(params, cfg, carry, streams_BL, jnp.asarray(starts), length)
        total += float(np.sum(np.asarray(sums, np.float64)))
    count = B * (L - 1)
    return math.exp(total / count), count


def evaluate(params, cfg: ModelConfig, ids_M, *, batch_size=10, bptt=35, source="split"):
    """Perplexity over a whole split of M tokens, and the number of targets scored.

    The carry starts at zero and flows through the split; every target of every
    stream is scored. With batch_size 1 that is all M - 1 next tokens.
    """
    streams = data.batchify(ids_M, batch_size, source=source)
    return stream_perplexity(params, cfg, jnp.asarray(streams),
                             model.init_carry(cfg, batch_size), bptt)
