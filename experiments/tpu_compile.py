"""The train step of every cell at two sizes compiled for three TPU slices on this CPU
host (``jax-rnnlm compile``, libtpu from ``pip install -e ".[tpu]"``): per-chip memory,
matmul FLOPs, collectives per step and compile time, as a Markdown table.

    python experiments/tpu_compile.py [--out /work/runs/tpu_compile.jsonl]

Sizes: ``ptb-lstm-small`` (Zaremba small: 2 layers of 200, T = 20) and ``awd-lstm``
(3 layers, 1150 wide, the last 400, variable T: the longest window, 75, is compiled),
each with ``--cell C`` (the parallel-in-time cells take the same widths, without AWD's
weight drop, which needs a w_h), at 5 streams per chip: B = 20 on the 4 chips of
v5e:2x2, 80 on the 16 of v5e:4x4, 40 on the 8 of v4:2x2x2. One ``jax-rnnlm compile``
process per row (libtpu serves one process at a time); the JSON lines go to ``--out``.
"""
import argparse
import json
import subprocess
import sys

CELLS = ("lstm", "gru", "rnn", "mingru", "minlstm", "rglru")
PARALLEL_IN_TIME = ("mingru", "minlstm", "rglru")
PRESETS = ("ptb-lstm-small", "awd-lstm")
TOPOLOGIES = {"v5e:2x2": 4, "v5e:4x4": 16, "v4:2x2x2": 8}  # name -> JAX devices (chips)
PER_DEVICE_BATCH = 5  # both presets' B = 20 on 4 devices; B grows with the slice
MIB = 2 ** 20


def compile_row(preset, cell, topology):
    argv = [sys.executable, "-m", "jax_rnnlm", "compile", "--topology", topology,
            "--preset", preset, "--cell", cell,
            "--batch-size", str(PER_DEVICE_BATCH * TOPOLOGIES[topology])]
    if cell in PARALLEL_IN_TIME:  # no w_h, so no DropConnect on it (AWD's weight drop)
        argv += ["--weight-drop", "0"]
    done = subprocess.run(argv, capture_output=True, text=True)
    row = {"preset": preset, "cell": cell, "topology": topology}
    if done.stdout.strip():  # a report (also when the run does not fit: exit 3)
        row.update(json.loads(done.stdout))
    if done.returncode:
        row["error"] = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return row


def table_line(r):
    if "train" not in r:
        return f"| {r['preset']} | {r['cell']} | {r['topology']} | error: {r['error']} |"
    t, (valid, test) = r["train"], r["eval"]
    return (f"| {r['preset']} | {r['cell']} | {r['topology']} | {r['devices']} / {r['hosts']} "
            f"| {r['per_device_batch']} | {t['memory_bytes']['total'] / MIB:,.0f} "
            f"| {r['peak_bytes_per_device'] / MIB:,.0f} | {t['matmul_flops_per_step'] / 1e9:.2f} "
            f"| {t['collectives_per_step']:g} | {t['compile_s']:.1f} "
            f"| {valid['compile_s'] + test['compile_s']:.1f} | {r['fits']} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/work/runs/tpu_compile.jsonl")
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--topologies", default=",".join(TOPOLOGIES))
    a = p.parse_args()
    print("| preset | cell | topology | chips / hosts | B per chip | train MiB per chip "
          "| peak MiB (train, eval) | matmul GFLOP per step and chip | collectives per step "
          "| train compile s | eval compile s | fits HBM |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with open(a.out, "a") as out:
        for preset in a.presets.split(","):
            for cell in a.cells.split(","):
                for topology in a.topologies.split(","):  # among TOPOLOGIES
                    row = compile_row(preset, cell, topology)
                    out.write(json.dumps(row) + "\n")
                    print(table_line(row), flush=True)


if __name__ == "__main__":
    main()
