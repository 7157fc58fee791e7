"""A synthetic Zipfian word corpus for the large-corpus benchmarks (seeded; not committed).

Word of rank r (1-based) is drawn with probability proportional to 1 / r (Zipf's
law with exponent 1, as natural text roughly follows); words are their rank in base
36 with a "w" in front, 20 per line. Writes OUT/train.txt, and small valid.txt and
test.txt (100k tokens each), so OUT loads as a three-split corpus.

    python experiments/zipf_corpus.py /tmp/zipf_1b --tokens 1000000000 --vocab 250000
"""
import argparse
from pathlib import Path

import numpy as np

WORDS_PER_LINE = 20
CHUNK = 10_000_000


def word_table(vocab):
    """(bytes of every word followed by a space, offsets [V], lengths [V])."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"

    def base36(n):
        s = ""
        while True:
            n, d = divmod(n, 36)
            s = digits[d] + s
            if n == 0:
                return s
    words = [f"w{base36(r)} ".encode() for r in range(vocab)]
    lengths = np.array([len(w) for w in words], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.frombuffer(b"".join(words), np.uint8), offsets, lengths


def text_bytes(ids, table, offsets, lengths):
    """The text of token ids: words joined by spaces, a newline after every 20th."""
    lens = lengths[ids]
    ends = np.cumsum(lens)
    starts = ends - lens
    index = np.repeat(offsets[ids] - starts, lens) + np.arange(ends[-1])
    out = table[index]
    out[ends[WORDS_PER_LINE - 1::WORDS_PER_LINE] - 1] = ord("\n")
    out[-1] = ord("\n")
    return out.tobytes()


def write(path, n_tokens, rng, cdf, table, offsets, lengths):
    with open(path, "wb") as f:
        for a in range(0, n_tokens, CHUNK):
            n = min(CHUNK, n_tokens - a)
            ids = np.searchsorted(cdf, rng.random(n), side="right")
            f.write(text_bytes(ids, table, offsets, lengths))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--tokens", type=float, default=1e7, help="train tokens (default: 1e7)")
    p.add_argument("--vocab", type=int, default=250_000, help="word types (default: 250k)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = 1.0 / np.arange(1, args.vocab + 1)
    cdf = np.cumsum(weights) / weights.sum()
    cdf[-1] = 1.0
    rng = np.random.default_rng(args.seed)
    table = word_table(args.vocab)
    for split, n in (("train", int(args.tokens)), ("valid", 100_000), ("test", 100_000)):
        write(args.out / f"{split}.txt", n, rng, cdf, *table)
    print(args.out)


if __name__ == "__main__":
    main()
