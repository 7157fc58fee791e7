"""Where a train window's time goes (``jax-rnnlm bench --profile N``).

Each executed HLO op is charged to the part whose ``jax.named_scope`` (set in
model.py, layers.py and step.py) appears in its op name, forward and backward
alike; "other" is what no scope covers (window slicing, dropout keys, loop
bookkeeping). Op times are summed over the runtime's threads, so the parts can
add up to more than the wall time of the window.
"""
import re
import tempfile
from pathlib import Path

import jax
from jax.profiler import ProfileData

PARTS = ("embedding", "recurrence", "output_matmul", "softmax_ce", "optimizer")


def window_parts(peer, repeats):
    """Wall seconds per train window, and per window for each part: op seconds and
    how many ops ran (from an XLA trace of ``repeats`` train calls of a JitPeer)."""
    scope = op_scopes(peer.run.as_text())
    wall, events = _trace(peer, repeats)
    windows = repeats * peer.opts["windows"]
    parts = dict.fromkeys(PARTS + ("other",), 0.0)
    ops = dict.fromkeys(PARTS + ("other",), 0)
    for ev in events:
        name = ev.name
        # control-flow ops span the ops they run: counting them would count time twice
        if name in scope and not name.startswith(("while", "conditional", "call")):
            parts[scope[name]] += ev.duration_ns / 1e9 / windows
            ops[scope[name]] += 1
    return {"window_s": wall / windows, "parts_s": parts,
            "ops_per_window": {k: v / windows for k, v in ops.items()}}


def op_scopes(hlo_text):
    """HLO instruction name -> the last of PARTS named in its op_name metadata, or "other"."""
    scope = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = .*op_name=\"([^\"]*)\"", line)
        if m:
            found = [p for p in PARTS if re.search(rf"(^|[/(]){p}($|[/)])", m.group(2))]
            scope[m.group(1)] = found[-1] if found else "other"
    return scope


def _trace(peer, repeats):
    """Wall seconds of ``repeats`` train calls, and the XLA op events they executed."""
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            wall = sum(peer.train() for _ in range(repeats))
        xspace = next(Path(d).rglob("*.xplane.pb"))
        events = [ev for plane in ProfileData.from_file(str(xspace)).planes
                  for line in plane.lines if line.name.startswith("tf_XLA")
                  for ev in line.events]
    return wall, events
