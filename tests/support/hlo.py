"""Reading a lowered program: which precision its matmuls really take."""
import re

import jax

_OPERANDS = re.compile(r": \(tensor<([^>]*)>, tensor<([^>]*)>\) -> tensor<[^>]*>$")


def dot_operand_dtypes(fn, *args):
    """Element types of the two operands of every stablehlo.dot_general in fn's lowering,
    e.g. [("bf16", "bf16"), ...]."""
    lines = [line for line in jax.jit(fn).lower(*args).as_text().splitlines()
             if "stablehlo.dot_general" in line]
    operands = [_OPERANDS.search(line) for line in lines]
    assert all(operands), [line for line, m in zip(lines, operands) if not m]
    return [tuple(t.split("x")[-1] for t in m.groups()) for m in operands]
