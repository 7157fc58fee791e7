"""Large-corpus data path: first build of the id cache and its reopening, per corpus.

For each corpus directory (e.g. from experiments/zipf_corpus.py), two fresh
processes: one builds the memory-mapped id cache (``data.load_corpus`` with an
empty cache directory), one reopens it. Prints one JSON line each: tokens, wall
seconds, tokens/s and the process's peak resident memory.

    python experiments/data_bench.py /tmp/zipf_10m /tmp/zipf_100m --cache /tmp/idcache
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from jax_rnnlm import data
t1 = time.perf_counter()
corpus = data.load_corpus(sys.argv[1], cache_dir=sys.argv[2], min_count=int(sys.argv[3]))
t2 = time.perf_counter()
tokens = len(corpus.train) + len(corpus.valid) + len(corpus.test)
print(json.dumps({"tokens": tokens, "vocab": len(corpus.vocab), "import_s": t1 - t0,
                  "load_s": t2 - t1, "peak_rss_mb": resource.getrusage(
                      resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(corpus, cache, min_count):
    out = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(cache), str(min_count)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    return json.loads(out.stdout.splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpora", nargs="+", type=Path)
    p.add_argument("--cache", type=Path, required=True, help="cache directory (emptied first)")
    p.add_argument("--min-count", type=int, default=2, help="rarer train words become <unk>, "
                   "which valid/test words unseen in train need (default: 2)")
    args = p.parse_args(argv)
    for corpus in args.corpora:
        cache = args.cache / corpus.name
        shutil.rmtree(cache, ignore_errors=True)
        for phase in ("build", "reopen"):
            r = run(corpus, cache, args.min_count)
            r.update(corpus=str(corpus), phase=phase,
                     tokens_per_s=r["tokens"] / r["load_s"],
                     text_mb=sum(f.stat().st_size for f in corpus.glob("*.txt")) / 2**20)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
