"""Command line: ``jax-rnnlm {train,eval,generate,score,plot,bench}`` (also ``python -m jax_rnnlm``).

Train flags are the fields of ModelConfig and TrainConfig with dashes for
underscores. Settings come from defaults < --preset < --config FILE < flags.
"""
import argparse
import dataclasses
import json
import sys

from jax_rnnlm import (adapt, bench, checkpoint, config, data, generate, parallel, plot, step,
                       tokenizer, train)
from jax_rnnlm.config import ModelConfig, TrainConfig, help_of
from jax_rnnlm.workdir import WorkdirError

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped by a signal, checkpoint saved, run again to resume
RUN_FLAGS = ("data", "level", "workdir", "min_count", "max_vocab", "data_cache")  # not config fields


def _add_config_flags(parser, cls, skip=()):
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=field.default, help=help_of(field))
        else:
            typ = {"int": int, "float": float, "str": str, float | None: float,
                   tuple: _int_list}.get(field.type, field.type)
            parser.add_argument(flag, type=typ, default=field.default,
                                help=f"{help_of(field)} (default: {field.default})")


def _int_list(text):
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _config(cls, args, **extra):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if hasattr(args, f.name)}
    return cls(**values, **extra)


def _train_parser(sub):
    tr = sub.add_parser("train", help="train a language model, then report val/test perplexity")
    tr.add_argument("--preset", choices=sorted(config.PRESETS),
                    help="named settings of a recorded experiment")
    tr.add_argument("--config", help="TOML or JSON file of settings (flags override it)")
    tr.add_argument("--data", default="ptb", help="'ptb', 'tinyshakespeare', a directory with "
                    "{ptb.,}{train,valid,test}.txt, or one text file (default: ptb)")
    tr.add_argument("--level", choices=["word", "char"], default="word",
                    help="tokens are words (one <eos> per line) or characters")
    tr.add_argument("--min-count", type=int, default=1, help="words seen fewer times in train "
                    "become <unk> (default: 1)")
    tr.add_argument("--max-vocab", type=int, default=0, help="keep only the most frequent words "
                    "(<unk> included; default: 0, all)")
    tr.add_argument("--data-cache", help="directory of the memory-mapped id caches (default: "
                    "$JAX_RNNLM_CACHE or ~/.cache/jax_rnnlm/ids)")
    tr.add_argument("--workdir", required=True, help="directory for config, metrics, checkpoints")
    tr.add_argument("--resume", choices=["auto", "refuse", "fresh"], default="auto",
                    help="workdir with checkpoints: continue from the newest (auto), stop with "
                    "an error (refuse), or move them aside and start over (fresh)")
    tr.add_argument("--coordinator", help="HOST:PORT of process 0 in a multi-process run, or "
                    "'auto' on SLURM / Open MPI / TPU pods (default: $JAX_COORDINATOR_ADDRESS)")
    tr.add_argument("--num-processes", type=int, help="processes of a multi-process run "
                    "(default: $JAX_NUM_PROCESSES)")
    tr.add_argument("--process-id", type=int, help="this process, 0..P-1 "
                    "(default: $JAX_PROCESS_ID)")
    _add_config_flags(tr, ModelConfig, skip=("vocab_size",))
    _add_config_flags(tr, TrainConfig)
    return tr


def _trained_parser(sub, name, help):
    p = sub.add_parser(name, help=help)
    p.add_argument("--workdir", required=True, help="workdir of a train run")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last",
                   help="the newest checkpoint, or the one with the best val perplexity")
    return p


def _adapt_flags(ev):
    ad = ev.add_argument_group("evaluation-time adaptation (reported beside the static "
                               "perplexity; the saved weights are never changed)")
    ad.add_argument("--dynamic", choices=adapt.RULES, help="dynamic evaluation: a gradient "
                    "step on each window after scoring it (Krause et al. 2018)")
    ad.add_argument("--dynamic-lr", type=float, nargs="+", default=[1e-3],
                    help="its step size (several: tuned on the valid split; default: 1e-3)")
    ad.add_argument("--dynamic-decay", type=float, nargs="+", default=[0.0],
                    help="rms rule: pull back toward the trained weights (several: tuned)")
    ad.add_argument("--dynamic-eps", type=float, nargs="+", default=[1.0],
                    help="rms rule: ε added to √MS, in units of its mean (several: tuned; "
                    "default: 1)")
    ad.add_argument("--ms-windows", type=int, default=1000, help="rms rule: train windows "
                    "that measure the mean squared gradient (default: 1000)")
    ad.add_argument("--cache", type=int, nargs="+", metavar="N", help="neural cache of the "
                    "last N positions (Grave et al. 2017; several: tuned)")
    ad.add_argument("--cache-theta", type=float, nargs="+", default=[0.3],
                    help="θ, flatness of the cache distribution (several: tuned; default: 0.3)")
    ad.add_argument("--cache-lambda", type=float, nargs="+", default=[0.1],
                    help="λ, weight of the cache in the mixture (several: tuned; default: 0.1)")


def build_parser():
    parser = argparse.ArgumentParser(prog="jax-rnnlm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    parser.train_parser = _train_parser(sub)
    ev = _trained_parser(sub, "eval", "perplexity of a trained model on one split")
    ev.add_argument("--data", help="corpus to score (default: the one the run trained on)")
    ev.add_argument("--level", choices=["word", "char"], help="default: the run's level")
    ev.add_argument("--split", choices=data.SPLITS, default="test", help="which split")
    ev.add_argument("--batch-size", type=int, default=1, help="parallel streams (default: 1)")
    ev.add_argument("--bptt", type=int, default=35, help="window length (no effect on the "
                    "static result beyond float rounding; with --dynamic, the adaptation "
                    "segment; default: 35)")
    _adapt_flags(ev)
    gen = _trained_parser(sub, "generate", "sample text from a trained model")
    gen.add_argument("--prompt", default="", help="text to continue (default: a new sentence)")
    gen.add_argument("--length", type=int, default=50, help="tokens to sample (default: 50)")
    gen.add_argument("--temperature", type=float, default=1.0,
                     help="softmax temperature; 0 picks the most likely token (default: 1)")
    gen.add_argument("--top-k", type=int, default=0, help="sample among the k most likely "
                     "tokens only (default: 0, all)")
    gen.add_argument("--top-p", type=float, default=1.0, help="sample from the smallest set of "
                     "tokens with this total probability (default: 1)")
    gen.add_argument("--skip", default="<unk>", help="comma-separated tokens never to emit; "
                     "they are resampled without advancing the state (default: <unk>)")
    gen.add_argument("--num-samples", type=int, default=1, help="samples drawn in parallel")
    gen.add_argument("--seed", type=int, default=0, help="random seed of the sampling")
    sc = _trained_parser(sub, "score", "log-probability and perplexity of text, as JSON lines")
    sc.add_argument("--text", required=True, help="text file to score, or - for stdin")
    sc.add_argument("--per", choices=["line", "text"], default="line",
                    help="score each line from a fresh state after <eos> (line), or the "
                    "whole text as one stream as eval does (text)")
    pl = sub.add_parser("plot", help="PNG learning curves of one or more runs")
    pl.add_argument("--workdir", nargs="+", default=[], dest="workdir_list",
                    help="workdirs of train runs (several may follow one --workdir)")
    pl.add_argument("workdirs", nargs="*", help="workdirs of train runs, as positional "
                    "arguments (the same as --workdir)")
    pl.add_argument("--out", default="curves.png", help="PNG file to write")
    sub.add_parser("bench", help="throughput benchmark (see jax-rnnlm bench --help)",
                   add_help=False)
    return parser


def resolve_train_args(argv):
    """Parse train flags with preset and config-file values as the defaults."""
    parser = build_parser()
    first = parser.parse_args(argv)
    known = {f.name for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
    known = (known - {"vocab_size"}) | set(RUN_FLAGS)
    values = dict(config.PRESETS[first.preset]) if first.preset else {}
    if first.config:
        from_file = config.read_config_file(first.config)
        config.check_keys(from_file, known, first.config)
        values.update(from_file)
    parser.train_parser.set_defaults(**values)
    return parser.parse_args(argv)


def cmd_train(args):
    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    main = parallel.is_main_process()
    order = "frequency" if args.softmax == "adaptive" else "first"
    corpus = data.load_corpus(args.data, args.level, min_count=args.min_count,
                              max_vocab=args.max_vocab, order=order, cache_dir=args.data_cache,
                              echo=lambda s: print(s, file=sys.stderr))
    model_cfg = _config(ModelConfig, args, vocab_size=len(corpus.vocab))
    train_cfg = _config(TrainConfig, args)
    if main:
        print(json.dumps({"model": dataclasses.asdict(model_cfg),
                          "train": dataclasses.asdict(train_cfg), "data": corpus.source,
                          "level": args.level}), file=sys.stderr)
    summary = train.fit(model_cfg, train_cfg, corpus, args.workdir, level=args.level,
                        resume=args.resume, echo=lambda s: print(s, file=sys.stderr),
                        live=None, main=main)
    if main:
        print(json.dumps(summary, allow_nan=False))


def cmd_eval(args):
    run = checkpoint.load_trained(args.workdir, args.checkpoint)
    corpus = data.load_corpus(args.data or run.source, args.level or run.level, vocab=run.vocab)
    record = {"split": args.split}
    if args.dynamic and args.cache:
        raise ValueError("--dynamic and --cache are separate adaptations: choose one")
    if args.dynamic:
        record.update(_eval_dynamic(run, corpus, args))
    elif args.cache:
        record.update(_eval_cache(run, corpus, args))
    else:
        record["ppl"], record["tokens"] = step.evaluate(
            run.params, run.model_cfg, getattr(corpus, args.split), batch_size=args.batch_size,
            bptt=args.bptt, source=f"{args.split} split")
    print(json.dumps({**record, "batch_size": args.batch_size, "step": run.step}))


def _tuned(score, settings, echo):
    """(best setting, its valid ppl): each setting scored on the valid split when there
    are several to choose from, else (the one setting, None)."""
    if len(settings) == 1:
        return settings[0], None
    scored = []
    for s in settings:
        scored.append((score(s), s))
        echo(f"valid ppl {scored[-1][0]:.3f} with {s}")
    ppl, best = min(scored, key=lambda x: x[0])
    return best, ppl


def _eval_dynamic(run, corpus, args):
    echo = lambda s: print(s, file=sys.stderr)  # noqa: E731
    rms, ms = args.dynamic == "rms", None
    if rms:
        ms = adapt.mean_square_grads(run.params, run.model_cfg, corpus.train,
                                     batch_size=args.batch_size, bptt=args.bptt,
                                     max_windows=args.ms_windows)
    settings = [adapt.DynamicConfig(args.dynamic, lr, decay, eps) for lr in args.dynamic_lr
                for decay in (args.dynamic_decay if rms else [0.0])
                for eps in (args.dynamic_eps if rms else [1.0])]

    def ppl(split, dyn):
        return adapt.dynamic_perplexity(run.params, run.model_cfg, getattr(corpus, split), dyn,
                                        batch_size=args.batch_size, bptt=args.bptt, ms=ms,
                                        source=f"{split} split")
    if len(settings) > 1 and args.split == "valid":
        raise ValueError("several --dynamic-lr/--dynamic-decay values are tuned on the valid "
                         "split; evaluate another --split with them")
    best, valid_ppl = _tuned(lambda d: ppl("valid", d)[0], settings, echo)
    adapted, count = ppl(args.split, best)
    static, _ = step.evaluate(run.params, run.model_cfg, getattr(corpus, args.split),
                              batch_size=args.batch_size, bptt=args.bptt,
                              source=f"{args.split} split")
    return {"ppl": adapted, "static_ppl": static, "tokens": count,
            "dynamic": dataclasses.asdict(best), "tuned_valid_ppl": valid_ppl}


def _eval_cache(run, corpus, args):
    settings = adapt.cache_grid(args.cache, args.cache_theta, args.cache_lambda)
    if len(settings) > 1 and args.split == "valid":
        raise ValueError("several --cache/--cache-theta/--cache-lambda values are tuned on the "
                         "valid split; evaluate another --split with them")
    kw = dict(batch_size=args.batch_size, bptt=args.bptt)
    valid_ppl = None
    if len(settings) > 1:
        scored, _, _ = adapt.cache_perplexities(run.params, run.model_cfg, corpus.valid,
                                                settings, source="valid split", **kw)
        for c, ppl in scored:
            print(f"valid ppl {ppl:.3f} with {c}", file=sys.stderr)
        best, valid_ppl = min(scored, key=lambda x: x[1])
        settings = [best]
    [(best, adapted)], _, count = adapt.cache_perplexities(
        run.params, run.model_cfg, getattr(corpus, args.split), settings,
        source=f"{args.split} split", **kw)
    static, _ = step.evaluate(run.params, run.model_cfg, getattr(corpus, args.split),
                              source=f"{args.split} split", **kw)
    return {"ppl": adapted, "static_ppl": static, "tokens": count,
            "cache": dataclasses.asdict(best), "tuned_valid_ppl": valid_ppl}


def cmd_generate(args):
    run = checkpoint.load_trained(args.workdir, args.checkpoint)
    for text in generate.generate_texts(run, args.prompt, length=args.length, seed=args.seed,
                                        num_samples=args.num_samples, skip=args.skip.split(","),
                                        temperature=args.temperature, top_k=args.top_k,
                                        top_p=args.top_p):
        print(text)


def cmd_score(args):
    run = checkpoint.load_trained(args.workdir, args.checkpoint)
    text = sys.stdin.read() if args.text == "-" else tokenizer.read_text(args.text)
    source = "stdin" if args.text == "-" else args.text
    for record in generate.score_text(run, text, per=args.per, source=source):
        print(json.dumps(record))


def cmd_plot(args):
    workdirs = args.workdir_list + args.workdirs
    if not workdirs:
        raise ValueError("name the runs to plot: --workdir W [W2 ...]")
    plot.learning_curves(workdirs, args.out)
    print(args.out)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "generate": cmd_generate,
            "score": cmd_score, "plot": cmd_plot}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark has its own flags (jax_rnnlm/bench/)
        return bench.main(argv[1:])
    parser = build_parser()
    try:
        args = resolve_train_args(argv) if argv[:1] == ["train"] else parser.parse_args(argv)
        COMMANDS[args.command](args)
    except train.Interrupted as e:
        print(f"jax-rnnlm {argv[0]}: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (tokenizer.DataError, WorkdirError, train.NonFiniteError, ValueError) as e:
        print(f"jax-rnnlm {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    return 0
