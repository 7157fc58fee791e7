"""Settings declared once. A setting is a field of a frozen config dataclass whose
declaration carries its type (the annotation), its allowed values, its default and
its help line; everything else is made from it:

- ``check(obj)``: the type and range of every field (run by each config's
  ``__post_init__``, so the Python API gets the same checks as the command line);
- ``add_flags(parser, cls)``: the command-line flags (``--max-steps`` for ``max_steps``);
- ``build(cls, layers)``: a config from values given by defaults, presets, config
  files and flags, where an error names the flag, or the file and key, that gave the
  bad value.

Types: ``int``, ``float`` (always finite), ``bool``, ``str``, ``X | None``, and
``tuple[int, ...]`` / ``tuple[float, ...]`` (a comma-separated flag, or a list in a file).
"""
import argparse
import dataclasses
import json
import math
import sys
import types
import typing
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib


class SettingError(ValueError):
    """A value a setting cannot take; ``name`` is the field, the message says why."""

    def __init__(self, name, problem):
        super().__init__(f"{name} {problem}")
        self.name, self.problem = name, problem


def field(default=dataclasses.MISSING, *, help, resumable=False, at_least=None, above=None,
          at_most=None, below=None, choices=None, valid=None):
    """A setting: its default, its one-line help, and the values it may take.

    ``at_least``/``above``/``at_most``/``below`` bound a number; ``choices`` lists the
    allowed values (also of each element of a tuple); ``valid`` is ``(predicate,
    "what it means")`` for anything else. ``resumable``: may change when a run resumes.
    """
    return dataclasses.field(default=default, metadata=dict(
        help=help, resumable=resumable, at_least=at_least, above=above, at_most=at_most,
        below=below, choices=choices, valid=valid))


def help_of(f: dataclasses.Field):
    return f.metadata["help"]


def resumable_fields(cls):
    """Names of the fields of ``cls`` marked resumable."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("resumable")}


def flag_of(name):
    return "--" + name.replace("_", "-")


# ---------------------------------------------------------------- types and ranges

def _parts(annotation):
    """(base type, None allowed, element type of a tuple or None)."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation, optional = args[0], True
    if typing.get_origin(annotation) is tuple:
        return tuple, optional, typing.get_args(annotation)[0]
    return annotation, optional, None


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _scalar(value, typ, name):
    """``value`` as ``typ`` (an int is a fine float; a bool is no number)."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise SettingError(name, f"must be {_NAMES[typ]}, got {value!r}")
    if typ is float and not math.isfinite(value):
        raise SettingError(name, f"must be a finite number, got {value!r}")
    return value


def _range_text(meta):
    """">= 1", "> 0", or "in [0, 1)": the allowed range in the usual notation."""
    low = [(b, meta[k]) for k, b in (("at_least", "["), ("above", "(")) if meta[k] is not None]
    high = [(b, meta[k]) for k, b in (("at_most", "]"), ("below", ")")) if meta[k] is not None]
    if low and high:
        return f"in {low[0][0]}{low[0][1]:g}, {high[0][1]:g}{high[0][0]}"
    sign = {"[": ">=", "(": ">", "]": "<=", ")": "<"}
    return " ".join(f"{sign[b]} {v:g}" for b, v in low + high)


def _in_range(value, meta):
    return ((meta["at_least"] is None or value >= meta["at_least"])
            and (meta["above"] is None or value > meta["above"])
            and (meta["at_most"] is None or value <= meta["at_most"])
            and (meta["below"] is None or value < meta["below"]))


def _check_one(value, meta, name):
    if meta["choices"] is not None and value not in meta["choices"]:
        raise SettingError(name, f"must be one of {', '.join(map(str, meta['choices']))}, "
                                 f"got {value!r}")
    if not _in_range(value, meta):
        raise SettingError(name, f"must be {_range_text(meta)}, got {value!r}")
    if meta["valid"] is not None and not meta["valid"][0](value):
        raise SettingError(name, f"must be {meta['valid'][1]}, got {value!r}")


def coerce(f: dataclasses.Field, value):
    """``value`` checked against the declaration of ``f`` (and normalised: int -> float,
    list -> tuple). SettingError naming the field if it does not fit."""
    typ, optional, element = _parts(f.type)
    if value is None:
        if optional:
            return None
        raise SettingError(f.name, "must be given a value")
    if typ is tuple:
        if not isinstance(value, (list, tuple)):
            raise SettingError(f.name, f"must be a list of {_NAMES[element][3:]}s, got "
                                       f"{value!r}")
        value = tuple(_scalar(v, element, f.name) for v in value)
        for v in value:
            _check_one(v, f.metadata, f.name)
        return value
    value = _scalar(value, typ, f.name)
    _check_one(value, f.metadata, f.name)
    return value


def check(obj):
    """Check (and normalise) every field of a config dataclass instance in place."""
    for f in dataclasses.fields(obj):
        if "help" in f.metadata:
            object.__setattr__(obj, f.name, coerce(f, getattr(obj, f.name)))


def parse_text(f: dataclasses.Field, text):
    """The value of a flag's text (a list of texts for a tuple flag)."""
    typ, optional, element = _parts(f.type)
    if typ is tuple:
        pieces = text if isinstance(text, list) else [p for p in text.split(",") if p.strip()]
        return [_from_text(p, element, f.name) for p in pieces]
    if optional and text.lower() == "none":
        return None
    return _from_text(text, typ, f.name)


def _from_text(text, typ, name):
    if typ is str:
        return text
    try:
        return typ(text)
    except ValueError:
        raise SettingError(name, f"must be {_NAMES[typ]}, got {text!r}") from None


# ---------------------------------------------------------------- flags and files

class Parser(argparse.ArgumentParser):
    """argparse with its refusals in one line (and exit status 2), like every other
    refusal of the command line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(low):
    """An argparse type: an integer >= ``low`` (for flags that are no config field)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


def add_flags(parser, cls, skip=(), list_nargs=False):
    """One flag per field of ``cls``. Flags default to "not given" (so ``build`` can
    tell them from defaults); tuple fields take comma-separated text, or several
    values with ``list_nargs``."""
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        default = f.default
        typ, _, _ = _parts(f.type)
        shown = "" if default in (None, (), "") else f" (default: {_show(default)})"
        if typ is bool:
            parser.add_argument(flag_of(f.name), action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_of(f) + shown)
        else:
            nargs = "+" if (typ is tuple and list_nargs) else None
            parser.add_argument(flag_of(f.name), default=argparse.SUPPRESS, nargs=nargs,
                                metavar=f.name.upper(), help=help_of(f) + shown)


def _show(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def read_file(path):
    """Settings from a .toml or .json file, as {field_name: value}."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read config file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: config file is not UTF-8 text") from None
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        values = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid {kind} ({e}); a .toml file is read as TOML, "
                         f"anything else as JSON") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a table of settings at the top level")
    return {k.replace("-", "_"): v for k, v in values.items()}


@dataclasses.dataclass(frozen=True)
class Layer:
    """Values from one source: where they came from (for error messages) and whether
    they are flag texts still to be parsed."""
    source: str            # "default", "preset NAME", a file path, or "flags"
    values: dict
    from_flags: bool = False

    def label(self, name):
        if self.from_flags:
            return flag_of(name)
        return name if self.source == "default" else f"{self.source}: {name}"


def known_names(*classes, skip=()):
    return {f.name for cls in classes for f in dataclasses.fields(cls)} - set(skip)


def check_known(layer: Layer, known):
    unknown = sorted(set(layer.values) - set(known))
    if unknown:
        raise ValueError(f"{layer.source}: unknown setting(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(known))}")


def build(cls, layers, **fixed):
    """A ``cls`` from the fields' values in ``layers`` (later layers win) plus ``fixed``.

    A value that does not fit its declaration, in any layer, is a ValueError naming the
    flag, or the file and key, it came from; a check across fields (``__post_init__``) keeps its
    own message."""
    values, label = {}, {}
    for f in dataclasses.fields(cls):
        for layer in layers:  # a bad value is refused even where a later layer overrides it
            if f.name in layer.values:
                raw = layer.values[f.name]
                try:
                    values[f.name] = coerce(f, parse_text(f, raw) if layer.from_flags
                                            and isinstance(raw, (str, list)) else raw)
                except SettingError as e:
                    raise ValueError(f"{layer.label(f.name)} {e.problem}") from None
                label[f.name] = layer.label(f.name)
    try:
        return cls(**values, **fixed)
    except SettingError as e:
        raise ValueError(f"{label.get(e.name, e.name)} {e.problem}") from None
