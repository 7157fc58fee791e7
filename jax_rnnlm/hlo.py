"""Reading XLA's optimised HLO text: its computations, an instruction's opcode, the trip
count of a ``while``, and the collectives a program runs. Used by ``jax-rnnlm compile``
(aot.py) and by the benchmark's ops per time step (bench/ops.py)."""
import re

# Opcodes that move data between devices; an async pair counts once, at its start.
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all",
               "collective-permute", "collective-broadcast", "ragged-all-to-all")
_CALLEES = re.compile(r"(?:calls|to_apply|branch_computations|true_computation|"
                      r"false_computation)=\{?(%?[\w.\-]+(?:, ?%?[\w.\-]+)*)")


def computations(hlo_text):
    """Computation name -> its instruction lines."""
    comps, name = {}, None
    for line in hlo_text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            words = line.split()
            name = (words[1] if words[0] == "ENTRY" else words[0]).lstrip("%")
            comps[name] = []
        elif name is not None and " = " in line:
            comps[name].append(line.strip())
    return comps


def entry(hlo_text):
    """The name of the program's ENTRY computation."""
    return next(line.split()[1].lstrip("%") for line in hlo_text.splitlines()
                if line.startswith("ENTRY"))


def opcode(line):
    """The HLO opcode of an instruction line (``%x = f32[2]{0} add(...)`` -> add)."""
    rhs = line.split(" = ", 1)[1]
    m = re.search(r"(?:^|[\]}) ])([a-z][\w\-]*)\(", rhs)
    return m.group(1) if m else "?"


def trip_count(while_line, comps):
    """Iterations of a ``while``, or None when unknown. XLA:CPU notes them in the
    backend config; a TPU program does not, so there they are read from the condition
    when it is a scan's ``i < N`` (one integer constant N; the counter starts at 0)."""
    known = re.search(r'"known_trip_count":\{"n":"(\d+)"', while_line)
    if known:
        return int(known.group(1))
    cond = comps[re.search(r"condition=%?([\w.\-]+)", while_line).group(1)]
    limits = [int(m.group(1)) for line in cond
              for m in [re.search(r"s(?:32|64)\[\]\S* constant\((\d+)\)", line)] if m]
    less = [line for line in cond if opcode(line) == "compare" and "direction=LT" in line]
    return limits[0] if len(less) == 1 and len(limits) == 1 else None


def executed_collectives(hlo_text):
    """({opcode: times run per call}, loops of unknown trip count) of a compiled program:
    each collective times the trip counts of the loops around it (a loop of unknown
    count taken once), the costliest branch of a conditional, fusions walked into."""
    comps = computations(hlo_text)
    unknown = 0

    def walk(comp):
        nonlocal unknown
        counts = {}
        for line in comps.get(comp, ()):
            op = opcode(line)
            base = op.removesuffix("-start")
            if base in COLLECTIVES and not op.endswith("-done"):
                inner = {base: 1}
            elif op == "while":
                trips = trip_count(line, comps)
                unknown += trips is None
                body = walk(re.search(r"body=%?([\w.\-]+)", line).group(1))
                inner = {k: v * (trips or 1) for k, v in body.items()}
            elif op in ("call", "fusion", "async-start", "conditional"):
                callees = [c.strip().lstrip("%") for m in _CALLEES.findall(line)
                           for c in m.split(",")]
                found = [walk(c) for c in callees]
                if op == "conditional":  # one branch runs
                    found = [max(found, key=lambda d: sum(d.values()), default={})]
                inner = {}
                for d in found:
                    inner = {k: inner.get(k, 0) + d.get(k, 0) for k in {*inner, *d}}
            else:
                continue
            counts = {k: counts.get(k, 0) + inner.get(k, 0) for k in {*counts, *inner}}
        return counts

    counts = walk(entry(hlo_text))
    return {k: v for k, v in sorted(counts.items()) if v}, unknown
