"""Command line: ``jax-rnnlm train`` and ``jax-rnnlm eval`` (also ``python -m jax_rnnlm``).

Flags are the fields of ModelConfig and TrainConfig with dashes for underscores.
"""
import argparse
import dataclasses
import json
import sys

from jax_rnnlm import checkpoint, data, train
from jax_rnnlm.config import help_of
from jax_rnnlm.model import ModelConfig
from jax_rnnlm.train import TrainConfig

def _add_config_flags(parser, cls, skip=()):
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true", help=help_of(field))
        else:
            typ = {"int": int, "float": float, "str": str}.get(field.type, field.type)
            parser.add_argument(flag, type=typ, default=field.default,
                                help=f"{help_of(field)} (default: {field.default})")


def _config(cls, args, **extra):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if hasattr(args, f.name)}
    return cls(**values, **extra)


EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped by a signal, checkpoint saved, run again to resume


def build_parser():
    parser = argparse.ArgumentParser(prog="jax-rnnlm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a language model, then report val/test perplexity")
    tr.add_argument("--data", default="ptb", help="'ptb', 'tinyshakespeare', a directory with "
                    "{ptb.,}{train,valid,test}.txt, or one text file (default: ptb)")
    tr.add_argument("--level", choices=["word", "char"], default="word",
                    help="tokens are words (one <eos> per line) or characters")
    tr.add_argument("--workdir", required=True, help="directory for config, metrics, checkpoints")
    tr.add_argument("--resume", choices=["auto", "refuse", "fresh"], default="auto",
                    help="workdir with checkpoints: continue from the newest (auto), stop with "
                    "an error (refuse), or move them aside and start over (fresh)")
    _add_config_flags(tr, ModelConfig, skip=("vocab_size",))
    _add_config_flags(tr, TrainConfig)
    ev = sub.add_parser("eval", help="perplexity of a trained model on one split")
    ev.add_argument("--workdir", required=True, help="workdir of a train run")
    ev.add_argument("--data", help="corpus to score (default: the one the run trained on)")
    ev.add_argument("--level", choices=["word", "char"], help="default: the run's level")
    ev.add_argument("--split", choices=data.SPLITS, default="test", help="which split")
    ev.add_argument("--checkpoint", choices=["last", "best"], default="last",
                    help="the newest checkpoint, or the one with the best val perplexity")
    ev.add_argument("--batch-size", type=int, default=1, help="parallel streams (default: 1)")
    ev.add_argument("--bptt", type=int, default=35, help="window length (no effect on the "
                    "result beyond float rounding; default: 35)")
    return parser


def cmd_train(args):
    corpus = data.load_corpus(args.data, args.level)
    model_cfg = _config(ModelConfig, args, vocab_size=len(corpus.vocab))
    train_cfg = _config(TrainConfig, args)
    print(json.dumps({"model": dataclasses.asdict(model_cfg),
                      "train": dataclasses.asdict(train_cfg), "data": corpus.source}),
          file=sys.stderr)
    summary = train.fit(model_cfg, train_cfg, corpus, args.workdir, level=args.level,
                        resume=args.resume,
                        echo=lambda s: print(s, file=sys.stderr))
    print(json.dumps(summary))


def cmd_eval(args):
    model_cfg, train_info, data_info, vocab = checkpoint.read_run_info(args.workdir)
    corpus = data.load_corpus(args.data or data_info["source"],
                              args.level or data_info["level"], vocab=vocab)
    train_cfg = TrainConfig(**train_info)
    template = train.init_state(model_cfg, train_cfg, train.make_optimizer(train_cfg))
    state = checkpoint.restore_params(args.workdir, template, which=args.checkpoint)
    ppl, count = train.evaluate(state.params, model_cfg, getattr(corpus, args.split),
                                batch_size=args.batch_size, bptt=args.bptt,
                                source=f"{args.split} split")
    print(json.dumps({"split": args.split, "ppl": ppl, "tokens": count,
                      "batch_size": args.batch_size, "step": int(state.step)}))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark has its own flags (jax_rnnlm/bench.py)
        from jax_rnnlm import bench
        return bench.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        {"train": cmd_train, "eval": cmd_eval}[args.command](args)
    except train.Interrupted as e:
        print(f"jax-rnnlm {args.command}: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (data.DataError, checkpoint.CheckpointError, train.NonFiniteError, ValueError) as e:
        print(f"jax-rnnlm {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
