"""The documentation's examples run as written.

Every ```python block of README.md and docs/*.md is executed in a fresh namespace (with
``vmo`` imported), on the compiled core; blocks that are not meant to run are marked
```cython or ```text. The docstring examples (``>>>``) of the package's modules run under
doctest.
"""

import doctest
import importlib
import pathlib
import pkgutil
import re

import pytest

import vmo

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def _blocks():
    for path in DOCS:
        if not path.exists():  # an installed package run from elsewhere
            continue
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            yield pytest.param(path, line, match.group(1),
                               id="%s:%d" % (path.relative_to(ROOT), line))


BLOCKS = list(_blocks())


def test_docs_have_examples():
    """The README and the API reference both carry runnable examples."""
    if not (ROOT / "README.md").exists():
        pytest.skip("no source tree")
    names = {path.name for path, _, _ in (b.values for b in BLOCKS)}
    assert {"README.md", "api.md"} <= names


@pytest.mark.parametrize("path,line,code", BLOCKS)
def test_doc_block_runs(path, line, code, capsys):
    if re.search(r"^(from|import) unicorn\b", code, re.M):
        # The emulator example needs the optional `emulator` extra
        # (tests/test_readme_emulator.py runs it on both kernels).
        pytest.importorskip("unicorn", reason="the emulator extra is not installed")
    # Line numbers in tracebacks point into the document.
    compiled = compile("\n" * (line - 1) + code, str(path), "exec")
    namespace = {"__name__": "__doc_example__", "vmo": vmo}
    exec(compiled, namespace)
    # Close whatever kernels the block left open (examples may leave them to the GC).
    for value in list(namespace.values()):
        if isinstance(value, vmo.Kernel) and not value.closed:
            value.close()


def _modules():
    # Subpackages too (vmo.bench, vmo._reference); a module that cannot be imported
    # (an optional dependency missing) is skipped by the test itself.
    for info in pkgutil.walk_packages(vmo.__path__, "vmo.", onerror=lambda name: None):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            yield info.name


@pytest.mark.parametrize("name", ["vmo", *_modules()])
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional dependency of a benchmark module
        pytest.skip(str(exc))
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name, globs={"vmo": vmo}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "%d docstring example(s) of %s failed" % (result.failed, name)
