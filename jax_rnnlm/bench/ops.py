"""Ops per time step of a compiled program, read off its optimised HLO.

XLA:CPU pays a fixed cost per op it runs (a kernel launch on the thunk runtime), and a
recurrent step's math is small, so the number of ops in the time loop's body steers
its speed more than its FLOPs. Counted: every instruction of the innermost ``while``
loops' bodies and conditions, except those that run no kernel (parameters, tuples,
get-tuple-element, constants, bitcasts). A fusion counts once.
"""
import re

from jax_rnnlm.hlo import computations, opcode

FREE = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast"}


def loop_ops(hlo_text, trips=None):
    """Ops per iteration of each innermost while loop (of those that run ``trips`` times,
    when given: the time loops of a T-step window, not e.g. a PRNG split's), in program
    order."""
    comps = computations(hlo_text)
    loops = []
    for lines in comps.values():
        for line in lines:
            if opcode(line) != "while":
                continue
            body = re.search(r"body=%?([\w.\-]+)", line).group(1)
            cond = re.search(r"condition=%?([\w.\-]+)", line).group(1)
            count = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
            if any(opcode(x) == "while" for x in comps[body]) or (
                    trips is not None and (count is None or int(count.group(1)) != trips)):
                continue
            loops.append(sum(opcode(x) not in FREE for x in comps[body] + comps[cond]))
    return loops


def ops_per_layer_step(hlo_text, layers, steps):
    """Ops per layer and time step of a program whose time loops (``steps`` iterations)
    are its innermost loops: forward and, in training, backward, summed. 0 without a
    time loop."""
    return sum(loop_ops(hlo_text, steps)) / layers
