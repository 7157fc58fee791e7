"""The README's Python example runs as written (on PTB from $JAX_RNNLM_DATA), and its
layout table names every module of the package."""
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_python_example_runs_and_learns():
    api = README.read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", api, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["logits"].shape == (1, 35, 10000)
    assert scope["n"] == 73750 and scope["ppl"] < 0.9 * 10000  # it learned something
    assert math.isfinite(float(scope["l"]))


def test_readme_layout_names_every_module():
    layout = README.read_text().split("## Layout", 1)[1]
    named = set(re.findall(r"`(\w+)/?`", layout))
    modules = {p.stem for p in (ROOT / "jax_rnnlm").glob("*.py")} - {"__init__", "__main__"}
    modules |= {p.name for p in (ROOT / "jax_rnnlm").iterdir() if (p / "__init__.py").is_file()}
    assert modules <= named, sorted(modules - named)


def test_readme_sequence_task_example_runs():
    section = README.read_text().split("## Other sequence tasks", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["logits"].shape == (2, 2) and math.isfinite(float(scope["loss"]))


def test_readme_flag_table_is_the_declared_settings():
    """Each train setting's row shows its flag, its declared default and its help line."""
    import dataclasses
    from jax_rnnlm.config import DataConfig, ModelConfig, TrainConfig
    from jax_rnnlm.settings import flag_of, help_of
    rows = {m.group(1): (m.group(2).strip().strip("`"), m.group(3).replace("`", "")) for m in
            re.finditer(r"^\| `(--[\w-]+)` \|([^|]*)\| (.*) \|$", README.read_text(), re.M)}
    for cls in (DataConfig, ModelConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            if f.name == "vocab_size":
                continue
            default, text = rows[flag_of(f.name)]
            shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else \
                ("" if f.default is None else str(f.default))
            assert default == shown, f.name
            assert text == help_of(f), f.name
