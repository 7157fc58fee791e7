"""Settings declared once: the checks, flags and file values made from one declaration."""
import dataclasses
import json

import pytest
from hypothesis import given, strategies as st

from jax_rnnlm import config, settings
from jax_rnnlm.config import DataConfig, EvalConfig, GenerateConfig, ModelConfig, TrainConfig
from jax_rnnlm.settings import Layer, SettingError, field


@dataclasses.dataclass(frozen=True)
class Toy:
    n: int = field(default=1, at_least=1, help="a count")
    rate: float = field(default=0.5, at_least=0.0, below=1.0, help="a probability")
    flag: bool = field(default=False, help="a switch")
    name: str = field(default="a", choices=("a", "b"), help="a choice")
    maybe: float | None = field(default=None, above=0.0, help="optional")
    sizes: tuple[int, ...] = field(default=(), at_least=1, help="a list")
    even: int = field(default=0, valid=(lambda v: v % 2 == 0, "even"), help="custom")

    def __post_init__(self):
        settings.check(self)


@pytest.mark.parametrize("changes, problem", [
    (dict(n=0), "n must be >= 1, got 0"),
    (dict(n=2.0), "n must be an integer, got 2.0"),
    (dict(n=True), "n must be an integer, got True"),
    (dict(rate=1.0), "rate must be in [0, 1), got 1.0"),
    (dict(rate=float("nan")), "rate must be a finite number, got nan"),
    (dict(rate=float("inf")), "rate must be a finite number, got inf"),
    (dict(rate="0.5"), "rate must be a number, got '0.5'"),
    (dict(flag="no"), "flag must be true or false, got 'no'"),
    (dict(flag=1), "flag must be true or false, got 1"),
    (dict(name="c"), "name must be one of a, b, got 'c'"),
    (dict(maybe=0.0), "maybe must be > 0, got 0.0"),
    (dict(sizes=5), "sizes must be a list of integers, got 5"),
    (dict(sizes=[1, 0]), "sizes must be >= 1, got 0"),
    (dict(even=3), "even must be even, got 3"),
    (dict(n=None), "n must be given a value"),
])
def test_a_value_outside_its_declaration_is_refused_naming_the_field(changes, problem):
    with pytest.raises(SettingError) as e:
        Toy(**changes)
    assert str(e.value) == problem


def test_values_are_normalised():
    toy = Toy(rate=0, sizes=[1, 2], maybe=None)
    assert toy.rate == 0.0 and isinstance(toy.rate, float) and toy.sizes == (1, 2)


@given(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True))
def test_the_python_api_and_the_command_line_accept_the_same_values(n, rate):
    def outcome(make):
        try:
            return make()
        except (SettingError, ValueError) as e:
            return str(e).split(" ", 1)[1]  # the problem, without the field's label
    direct = outcome(lambda: Toy(n=n, rate=rate))
    flags = Layer("flags", {"n": str(n), "rate": repr(rate)}, from_flags=True)
    assert outcome(lambda: settings.build(Toy, [flags])) == direct


def test_build_names_the_source_of_a_bad_value():
    preset = Layer("preset p", {"n": 3, "rate": 0.5})
    flags = Layer("flags", {"rate": "0.25"}, from_flags=True)
    assert settings.build(Toy, [preset, flags]) == Toy(n=3, rate=0.25)  # later layers win
    broken = Layer("c.toml", {"rate": 2.0})  # refused even though a flag overrides it
    with pytest.raises(ValueError, match=r"^c.toml: rate must be in \[0, 1\), got 2.0$"):
        settings.build(Toy, [preset, broken, flags])
    with pytest.raises(ValueError, match=r"^--n must be an integer, got 'x'$"):
        settings.build(Toy, [Layer("flags", {"n": "x"}, from_flags=True)])
    with pytest.raises(ValueError, match=r"^f.toml: name must be one of a, b, got 'z'$"):
        settings.build(Toy, [Layer("f.toml", {"name": "z"})])


def test_a_check_across_fields_keeps_its_own_message():
    with pytest.raises(ValueError, match="tie_weights needs embed_dim"):
        settings.build(ModelConfig, [Layer("flags", {"tie_weights": True, "embed_dim": "3"},
                                           from_flags=True)], vocab_size=10)


def test_read_file_reads_toml_and_json_and_names_a_broken_file(tmp_path):
    (tmp_path / "a.toml").write_text('hidden-dim = 8\ncell = "gru"\n')
    (tmp_path / "b.json").write_text(json.dumps({"hidden_dim": 8}))
    assert settings.read_file(tmp_path / "a.toml") == {"hidden_dim": 8, "cell": "gru"}
    assert settings.read_file(tmp_path / "b.json") == {"hidden_dim": 8}
    (tmp_path / "c.toml").write_text("hidden_dim = \n")
    with pytest.raises(ValueError, match=r"c.toml: not valid TOML"):
        settings.read_file(tmp_path / "c.toml")
    (tmp_path / "d.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="a table of settings"):
        settings.read_file(tmp_path / "d.json")


def test_every_setting_has_help_and_every_default_passes_its_own_checks():
    for cls in (ModelConfig, TrainConfig, DataConfig, EvalConfig, GenerateConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata["help"], f"{cls.__name__}.{f.name}"
            if f.default is not dataclasses.MISSING:
                settings.coerce(f, f.default)


def test_presets_name_only_declared_settings():
    known = settings.known_names(DataConfig, ModelConfig, TrainConfig)
    for name, values in config.PRESETS.items():
        assert set(values) <= known, name


@pytest.mark.parametrize("changes, problem", [
    (dict(dynamic="sgd", cache=(10,)), "choose one"),
    (dict(split="valid", cache=(5, 10)), "tuned on the valid split"),
    (dict(split="valid", dynamic="sgd", dynamic_lr=(1e-3, 2e-3)), "tuned on the valid split"),
])
def test_eval_settings_that_contradict_each_other_are_refused(changes, problem):
    with pytest.raises(ValueError, match=problem):
        EvalConfig(**changes)
