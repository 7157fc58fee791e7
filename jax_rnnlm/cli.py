"""Command line: jax-rnnlm train, compile, eval, generate, score, plot, bench (also
python -m jax_rnnlm).

The settings flags are the fields of the config dataclasses (config.py), made by
``settings``; a train run's settings come from defaults < --preset < --config FILE
< flags. Every setting, including those checked against the data, is checked before
any work or any write. stdout carries results only (strict JSON lines, or the
sampled text of ``generate``); progress, logs and errors go to stderr.
"""
import dataclasses
import sys

import jax

from jax_rnnlm import (adapt, aot, bench, checkpoint, config, data, generate, idcache, parallel,
                       plot, settings, step, tokenizer, train)
from jax_rnnlm.config import (DataConfig, EvalConfig, GenerateConfig, ModelConfig, ScoreConfig,
                              TrainConfig)
from jax_rnnlm.settings import Layer, Parser, int_at_least
from jax_rnnlm.workdir import WorkdirError, json_line, read_run_info, refuse_if_not_ours

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped by a signal, checkpoint saved, run again to resume
ANY_VOCAB = 2 ** 31 - 1  # the model settings are checked before the data give V


def echo(text):
    print(text, file=sys.stderr)


def _run_settings(p):
    """--preset, --config and every data, model and train setting: what defines a run."""
    p.add_argument("--preset", choices=sorted(config.PRESETS),
                   help="named settings of a recorded experiment")
    p.add_argument("--config", help="TOML or JSON file of settings (flags override it)")
    settings.add_flags(p, DataConfig)
    settings.add_flags(p, ModelConfig, skip=("vocab_size",))
    settings.add_flags(p, TrainConfig)


def _train_parser(sub):
    tr = sub.add_parser("train", help="train a language model, then report val/test perplexity")
    tr.add_argument("--workdir", required=True, help="directory for config, metrics, "
                    "checkpoints: new, empty, or a jax-rnnlm workdir")
    tr.add_argument("--resume", choices=["auto", "refuse", "fresh"], default="auto",
                    help="workdir with checkpoints: continue from the newest (auto), stop with "
                    "an error (refuse), or move them aside and start over (fresh)")
    tr.add_argument("--coordinator", help="HOST:PORT of process 0 in a multi-process run, or "
                    "'auto' on SLURM / Open MPI / TPU pods (default: $JAX_COORDINATOR_ADDRESS)")
    tr.add_argument("--num-processes", type=int_at_least(1), help="processes of a "
                    "multi-process run (default: $JAX_NUM_PROCESSES)")
    tr.add_argument("--process-id", type=int_at_least(0), help="this process, 0..P-1 "
                    "(default: $JAX_PROCESS_ID)")
    _run_settings(tr)


def _compile_parser(sub):
    co = sub.add_parser("compile", help="compile a run's train and eval steps for a device "
                        "topology (a TPU slice, without owning one, or cpu:N) and report its "
                        "per-device memory, FLOPs and collectives as one JSON line")
    co.add_argument("--topology", required=True, help=f"the devices: {aot.FORMS} (TPU "
                    f"slices need libtpu: pip install -e \".[tpu]\")")
    _run_settings(co)


def _trained_parser(sub, name, help, cls):
    p = sub.add_parser(name, help=help)
    p.add_argument("--workdir", required=True, help="workdir of a train run")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last",
                   help="the newest checkpoint, or the one with the best val perplexity")
    settings.add_flags(p, cls, list_nargs=True)


def build_parser():
    parser = Parser(prog="jax-rnnlm", description="Recurrent-network language models in JAX: "
                    "train, evaluate, sample, score, plot learning curves, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _compile_parser(sub)
    _trained_parser(sub, "eval", "perplexity of a trained model on one split (and with "
                    "evaluation-time adaptation: --dynamic, --cache)", EvalConfig)
    _trained_parser(sub, "generate", "sample text from a trained model", GenerateConfig)
    _trained_parser(sub, "score", "log-probability and perplexity of text, as JSON lines",
                    ScoreConfig)
    pl = sub.add_parser("plot", help="PNG learning curves of one or more runs")
    pl.add_argument("--workdir", nargs="+", default=[], dest="workdir_list",
                    help="workdirs of train runs (several may follow one --workdir)")
    pl.add_argument("workdirs", nargs="*", help="workdirs of train runs, as positional "
                    "arguments (the same as --workdir)")
    pl.add_argument("--out", default="curves.png", help="PNG file to write")
    sub.add_parser("bench", help="throughput benchmark (see jax-rnnlm bench --help)",
                   add_help=False)
    return parser


def flags_given(args, cls):
    """The settings of ``cls`` given as flags (their texts), as a Layer."""
    return Layer("flags", {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                           if hasattr(args, f.name)}, from_flags=True)


def train_layers(args):
    """[preset, config file, flags]: where each train setting may come from, in order."""
    known = settings.known_names(DataConfig, ModelConfig, TrainConfig, skip=("vocab_size",))
    layers = []
    if args.preset:
        layers.append(Layer(f"preset {args.preset}", dict(config.PRESETS[args.preset])))
    if args.config:
        layers.append(Layer(args.config, settings.read_file(args.config)))
        settings.check_known(layers[-1], known)
    flags = {}
    for cls in (DataConfig, ModelConfig, TrainConfig):
        flags.update(flags_given(args, cls).values)
    return layers + [Layer("flags", flags, from_flags=True)]


def train_settings(args, vocab_size=ANY_VOCAB):
    """(DataConfig, ModelConfig, TrainConfig) of parsed train flags, each value checked
    (ValueError naming its flag, or file and key). ``vocab_size``: V, once the data give it."""
    layers = train_layers(args)
    return (settings.build(DataConfig, layers),
            settings.build(ModelConfig, layers, vocab_size=vocab_size),
            settings.build(TrainConfig, layers))


def cmd_train(args):
    data_cfg, model_cfg, train_cfg = train_settings(args)
    idcache.check_cache_dir(data_cfg.data_cache)
    refuse_if_not_ours(args.workdir)
    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    main = parallel.is_main_process()
    corpus, model_cfg = load_run_corpus(data_cfg, model_cfg, train_cfg)
    summary = train.fit(model_cfg, train_cfg, corpus, args.workdir, data_cfg=data_cfg,
                        resume=args.resume, echo=echo, live=None, main=main)
    if main:
        print(json_line(summary), end="")


def load_run_corpus(data_cfg, model_cfg, train_cfg):
    """The corpus of a run's settings (checked against them) and the model with its V."""
    order = "frequency" if model_cfg.softmax == "adaptive" else "first"
    corpus = data.load_corpus(data_cfg.data, data_cfg.level, min_count=data_cfg.min_count,
                              max_vocab=data_cfg.max_vocab, order=order,
                              cache_dir=data_cfg.data_cache, echo=echo)
    train.check_data(train_cfg, corpus)
    return corpus, dataclasses.replace(model_cfg, vocab_size=len(corpus.vocab))


def cmd_compile(args):
    data_cfg, model_cfg, train_cfg = train_settings(args)
    topo = aot.topology(args.topology)
    aot.check_devices(train_cfg, topo)  # before loading data
    idcache.check_cache_dir(data_cfg.data_cache)
    corpus, model_cfg = load_run_corpus(data_cfg, model_cfg, train_cfg)
    report = aot.compile_run(model_cfg, train_cfg, corpus, topo)
    print(json_line(report), end="")
    aot.check_fits(report)


def load_eval_corpus(args, ev: EvalConfig):
    """(model, train, data settings, vocab) of the run and the corpus to score, with
    every setting checked against them before the params are read."""
    model_cfg, _, data_cfg, vocab = read_run_info(args.workdir)
    if ev.level and ev.level != data_cfg.level:
        raise ValueError(f"--level {ev.level}: this run was trained on {data_cfg.level}s "
                         f"and scores text as {data_cfg.level}s; drop --level")
    cache_dir = ev.data_cache or data_cfg.data_cache
    idcache.check_cache_dir(cache_dir)
    corpus = data.load_corpus(ev.data or data_cfg.data, data_cfg.level, vocab=vocab,
                              cache_dir=cache_dir, echo=echo)
    splits = [ev.split] + (["valid"] if ev.tunes_several else []) + \
        (["train"] if ev.dynamic == "rms" else [])
    for split in splits:
        n = len(getattr(corpus, split))
        if n // ev.batch_size < 2:
            raise data.DataError(f"--batch-size {ev.batch_size}: the {split} split's {n} "
                                 f"tokens cannot fill {ev.batch_size} streams of at least 2 "
                                 f"tokens; use a smaller --batch-size")
    return corpus


def cmd_eval(args):
    ev = settings.build(EvalConfig, [flags_given(args, EvalConfig)])
    corpus = load_eval_corpus(args, ev)
    run = checkpoint.load_trained(args.workdir, args.checkpoint)
    record = {"split": ev.split}
    if ev.dynamic:
        record.update(_eval_dynamic(run, corpus, ev))
    elif ev.cache:
        record.update(_eval_cache(run, corpus, ev))
    else:
        record["ppl"], record["tokens"] = step.evaluate(
            run.params, run.model_cfg, getattr(corpus, ev.split), batch_size=ev.batch_size,
            bptt=ev.bptt, source=f"{ev.split} split")
    if not record["tokens"]:
        raise ValueError(f"the {ev.split} split had no token to score")
    print(json_line({**record, "batch_size": ev.batch_size, "step": run.step}), end="")


def _tuned(score, settings_list):
    """(best setting, its valid ppl): each setting scored on the valid split when there
    are several to choose from, else (the one setting, None)."""
    if len(settings_list) == 1:
        return settings_list[0], None
    scored = []
    for s in settings_list:
        scored.append((score(s), s))
        echo(f"valid ppl {scored[-1][0]:.3f} with {s}")
    ppl, best = min(scored, key=lambda x: x[0])
    return best, ppl


def _eval_dynamic(run, corpus, ev: EvalConfig):
    rms, ms = ev.dynamic == "rms", None
    if rms:
        ms = adapt.mean_square_grads(run.params, run.model_cfg, corpus.train,
                                     batch_size=ev.batch_size, bptt=ev.bptt,
                                     max_windows=ev.ms_windows)
    grid = [adapt.DynamicConfig(ev.dynamic, lr, decay, eps) for lr in ev.dynamic_lr
            for decay in (ev.dynamic_decay if rms else [0.0])
            for eps in (ev.dynamic_eps if rms else [1.0])]

    def ppl(split, dyn):
        return adapt.dynamic_perplexity(run.params, run.model_cfg, getattr(corpus, split), dyn,
                                        batch_size=ev.batch_size, bptt=ev.bptt, ms=ms,
                                        source=f"{split} split")
    best, valid_ppl = _tuned(lambda d: ppl("valid", d)[0], grid)
    adapted, count = ppl(ev.split, best)
    static, _ = step.evaluate(run.params, run.model_cfg, getattr(corpus, ev.split),
                              batch_size=ev.batch_size, bptt=ev.bptt,
                              source=f"{ev.split} split")
    return {"ppl": adapted, "static_ppl": static, "tokens": count,
            "dynamic": dataclasses.asdict(best), "tuned_valid_ppl": valid_ppl}


def _eval_cache(run, corpus, ev: EvalConfig):
    grid = adapt.cache_grid(ev.cache, ev.cache_theta, ev.cache_lambda)
    kw = dict(batch_size=ev.batch_size, bptt=ev.bptt)
    valid_ppl = None
    if len(grid) > 1:
        scored, _, _ = adapt.cache_perplexities(run.params, run.model_cfg, corpus.valid,
                                                grid, source="valid split", **kw)
        for c, ppl in scored:
            echo(f"valid ppl {ppl:.3f} with {c}")
        best, valid_ppl = min(scored, key=lambda x: x[1])
        grid = [best]
    [(best, adapted)], _, count = adapt.cache_perplexities(
        run.params, run.model_cfg, getattr(corpus, ev.split), grid,
        source=f"{ev.split} split", **kw)
    static, _ = step.evaluate(run.params, run.model_cfg, getattr(corpus, ev.split),
                              source=f"{ev.split} split", **kw)
    return {"ppl": adapted, "static_ppl": static, "tokens": count,
            "cache": dataclasses.asdict(best), "tuned_valid_ppl": valid_ppl}


def cmd_generate(args):
    gen = settings.build(GenerateConfig, [flags_given(args, GenerateConfig)])
    model_cfg, _, _, _ = read_run_info(args.workdir)
    if gen.top_k > model_cfg.vocab_size:
        raise ValueError(f"--top-k {gen.top_k} is more than the vocabulary's "
                         f"{model_cfg.vocab_size} tokens")
    run = checkpoint.load_trained(args.workdir, args.checkpoint)
    texts = generate.generate_texts(run, gen.prompt, length=gen.length, seed=gen.seed,
                                    num_samples=gen.num_samples, skip=gen.skip.split(","),
                                    temperature=gen.temperature, top_k=gen.top_k,
                                    top_p=gen.top_p)
    for i, text in enumerate(texts):
        if gen.json:
            print(json_line({"sample": i, "text": text}), end="")
        else:
            print(("\n" if i else "") + text)


def cmd_score(args):
    sc = settings.build(ScoreConfig, [flags_given(args, ScoreConfig)])
    text = sys.stdin.read() if sc.text == "-" else tokenizer.read_text(sc.text)
    run = checkpoint.load_trained(args.workdir, args.checkpoint)
    source = "stdin" if sc.text == "-" else sc.text
    for record in generate.score_text(run, text, per=sc.per, source=source):
        print(json_line(record), end="")


def cmd_plot(args):
    workdirs = args.workdir_list + args.workdirs
    if not workdirs:
        raise ValueError("name the runs to plot: --workdir W [W2 ...]")
    plot.learning_curves(workdirs, args.out)
    print(args.out)


COMMANDS = {"train": cmd_train, "compile": cmd_compile, "eval": cmd_eval,
            "generate": cmd_generate, "score": cmd_score, "plot": cmd_plot}


def use_host_devices(n):
    """Make this process's CPU backend start with ``n`` devices (None: leave it)."""
    if n is None or n == jax.config.jax_num_cpu_devices:
        return
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError as e:  # JAX has started its backends in this process already
        raise ValueError(f"cpu:{n} needs {n} host devices, and this process has started "
                         f"JAX with {jax.device_count('cpu')}: run jax-rnnlm compile in a "
                         f"fresh process") from e


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark has its own flags (jax_rnnlm/bench/)
        return bench.main(argv[1:])
    args = build_parser().parse_args(argv)
    prog = f"jax-rnnlm {args.command}"
    try:
        if args.command == "compile":
            aot.compile_from_host(args.topology)
            use_host_devices(aot.cpu_device_count(args.topology))
        COMMANDS[args.command](args)
    except train.Interrupted as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except aot.DoesNotFit as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return aot.EXIT_DOES_NOT_FIT
    except (tokenizer.DataError, WorkdirError, train.NonFiniteError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be written or read, named by the OS
        print(f"{prog}: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0
