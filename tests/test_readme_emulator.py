"""README "Embedding in an emulator: guest RAM for a CPU": the example runs as written, on
both kernels, with Unicorn mapping guest RAM through `Pin.address` and `lookup_runs` and
keeping the mapping right with `on_change` (docs/semantics.md "Change notifications").

Unicorn is the optional `emulator` extra (pyproject.toml): without it this test is skipped;
.ci/run installs the extra and runs this file.
"""

import pathlib
import re

import pytest

import vmo

pytest.importorskip("unicorn", reason="the emulator extra (pip install '.[emulator]')")

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _example():
    if not README.exists():
        pytest.skip("no source tree")
    text = README.read_text(encoding="utf-8")
    start = text.index("### Embedding in an emulator")
    match = re.search(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text[start:], re.M | re.S)
    line = text.count("\n", 0, start + match.start()) + 2
    return line, match.group(1)


@pytest.mark.parametrize("engine", ["core", "reference"])
def test_the_emulator_example_runs(engine):
    line, code = _example()
    assert "vmo.Kernel(memory_size=16 << 20)" in code
    namespace = {"__name__": "__readme_emulator__", "vmo": vmo}
    if engine == "reference":
        from vmo._reference import Kernel

        code = code.replace("vmo.Kernel(memory_size=16 << 20)", "Kernel(memory_size=16 << 20)")
        namespace["Kernel"] = Kernel
    exec(compile("\n" * (line - 1) + code, str(README), "exec"), namespace)
    kernel = namespace["k"]
    assert kernel.closed
