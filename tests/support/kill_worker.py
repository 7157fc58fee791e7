"""Runs `jax-rnnlm train ARGS` and SIGKILLs itself at a chosen point (for resume tests).

    python tests/support/kill_worker.py call:N      ARGS...   # right after the N-th compiled call
    python tests/support/kill_worker.py mid-save:S  ARGS...   # while step S is being saved
    python tests/support/kill_worker.py never       ARGS...
"""
import os
import signal
import sys

from jax_rnnlm import checkpoint, cli, train


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def main():
    point, args = sys.argv[1], sys.argv[2:]
    kind, _, value = point.partition(":")
    if kind == "call":
        original = train.Clock.count

        def count(self, seconds, tokens):
            original(self, seconds, tokens)
            if self.calls == int(value):
                die()
        train.Clock.count = count
    elif kind == "mid-save":
        original = checkpoint.Checkpoints.wait

        def wait(self):
            if self.last.latest_step() == int(value) or int(value) in self.last.all_steps():
                die()  # the save was started (asynchronously) but not waited for
            original(self)
        checkpoint.Checkpoints.wait = wait
    sys.exit(cli.main(args))


if __name__ == "__main__":
    main()
