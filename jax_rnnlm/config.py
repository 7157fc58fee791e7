"""Config fields that carry their own one-line help (shown by ``jax-rnnlm ... --help``)."""
import dataclasses


def field(default=dataclasses.MISSING, *, help):
    """A dataclass field with a default and a one-line help text."""
    return dataclasses.field(default=default, metadata={"help": help})


def help_of(f: dataclasses.Field):
    return f.metadata["help"]
