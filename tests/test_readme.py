"""The README's Python example runs as written (on PTB from $JAX_RNNLM_DATA)."""
import math
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_and_learns():
    api = README.read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", api, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["logits"].shape == (1, 35, 10000)
    assert scope["n"] == 73750 and scope["ppl"] < 0.9 * 10000  # it learned something
    assert math.isfinite(float(scope["l"]))
