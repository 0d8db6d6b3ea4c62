"""Every example in the README, the docs and the package's docstrings runs and says what it shows.

Markdown files: the ```python blocks (and MyST ``{code-block} python`` directives) of one file
run in order in one namespace, compiled under the file's name with their real line numbers, so
a traceback points at the Markdown line. ```pycon blocks, and python or unlabelled blocks whose
first line starts with ``>>>``, run as doctests in the same namespace and compare their output.
Blocks in any other language (bash, console, text, toml, ...) are shown, not run. A file that
mentions ``REDIS_URL`` runs with that environment variable set to a private Redis server's URL.

Docstrings: the doctests of every module of the `resilient` package run; `__main__` modules,
which run a program when imported, are read from source instead of imported.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import resilient

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MODULES = sorted(
    [resilient.__name__]
    + [info.name for info in pkgutil.walk_packages(resilient.__path__, f"{resilient.__name__}.")]
)
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\{(?P<name>[\w:-]+)\}\s*(?P<argument>.*)$")
_RUN_AS_PYTHON = {"python", "py", "python3"}
_RUN_AS_DOCTEST = {"pycon"}


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, its text, and the file line its text starts on."""

    language: str
    source: str
    line: int

    @property
    def is_doctest(self) -> bool:
        """Whether the block is an interactive session, compared with doctest."""
        if self.language in _RUN_AS_DOCTEST:
            return True
        first = next((line for line in self.source.splitlines() if line.strip()), "")
        runnable = self.language in _RUN_AS_PYTHON or not self.language
        return runnable and first.lstrip().startswith(">>>")


def _language(info: str) -> str:
    """Return the language of a fence's info string, looking inside MyST code directives."""
    info = info.strip()
    directive = _DIRECTIVE.match(info)
    if directive is None:
        return info.split()[0].lower() if info else ""
    if directive["name"] in {"code-block", "code", "sourcecode"}:
        return directive["argument"].split()[0].lower() if directive["argument"] else ""
    return f"{{{directive['name']}}}"


def _strip_directive_options(lines: list[str]) -> tuple[list[str], int]:
    """Drop a MyST directive's ``:option:`` lines (and a blank after them); return the skip."""
    skipped = 0
    while skipped < len(lines) and re.match(r"^:[\w-]+:", lines[skipped]):
        skipped += 1
    if skipped and skipped < len(lines) and not lines[skipped].strip():
        skipped += 1
    return lines[skipped:], skipped


def code_blocks(text: str) -> list[Block]:
    """Return the fenced code blocks of a Markdown text, in order, nested fences excluded."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence, info = len(opening["indent"]), opening["fence"], opening["info"]
        body: list[str] = []
        start = index + 1
        index += 1
        while index < len(lines):
            closing = _FENCE.match(lines[index])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            line = lines[index]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            index += 1
        index += 1  # past the closing fence
        language = _language(info)
        if _DIRECTIVE.match(info.strip()):
            body, skipped = _strip_directive_options(body)
            start += skipped
        # blocks nested in this one (e.g. inside a ```` fence showing Markdown) are its text
        blocks.append(Block(language, "\n".join(body) + "\n", start + 1))
    return blocks


def _run_doctest(block: Block, namespace: dict[str, object], path: Path) -> None:
    """Run one interactive block as a doctest in *namespace*; fail with doctest's report."""
    name = path.name
    test = doctest.DocTestParser().get_doctest(block.source, namespace, name, str(path), 0)
    test.globs = namespace  # DocTest copies its globals; share them with the file's other blocks
    # doctest reports `test.lineno + example.lineno + 1`; make that the Markdown line
    test.lineno = block.line - 1
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    runner.run(test, out=report.append, clear_globs=False)
    if runner.failures:
        pytest.fail("".join(report), pytrace=False)


@pytest.mark.parametrize(
    "path", MARKDOWN_FILES, ids=[str(path.relative_to(ROOT)) for path in MARKDOWN_FILES]
)
def test_markdown_examples(
    path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Python and pycon example in this Markdown file runs and shows the right output."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    text = path.read_text(encoding="utf-8")
    if "REDIS_URL" in text:  # examples that need Redis read its URL: a private test server's
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    try:
        for block in code_blocks(text):
            if block.is_doctest:
                _run_doctest(block, namespace, path)
            elif block.language in _RUN_AS_PYTHON:
                padded = "\n" * (block.line - 1) + block.source
                exec(compile(padded, str(path), "exec", dont_inherit=True), namespace)
    finally:
        resilient.reset_defaults()


def _script_doctests(module_name: str) -> list[doctest.DocTest]:
    """Return the doctests of a module that runs when imported (``__main__``), unimported."""
    spec = importlib.util.find_spec(module_name)
    assert spec is not None
    assert spec.origin is not None
    source = Path(spec.origin).read_text(encoding="utf-8")
    parser = doctest.DocTestParser()
    tests = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        docstring = ast.get_docstring(node)
        if docstring:
            line = node.body[0].lineno - 1  # 0-based, as doctest counts
            globs = {"__name__": module_name}
            tests.append(parser.get_doctest(docstring, globs, module_name, spec.origin, line))
    return tests


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name: str) -> None:
    """Every doctest in this module's docstrings passes."""
    if module_name.rpartition(".")[2] == "__main__":
        tests = _script_doctests(module_name)  # importing it would run the command line
    else:
        tests = doctest.DocTestFinder().find(importlib.import_module(module_name), module_name)
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    report: list[str] = []
    try:
        for test in tests:
            runner.run(test, out=report.append)
    finally:
        resilient.reset_defaults()
    if runner.failures:
        pytest.fail("".join(report), pytrace=False)


def test_code_blocks_keep_line_numbers() -> None:
    """The Markdown reader finds each block's language and the line its text starts on."""
    text = (
        "# Title\n"
        "\n"
        "```python\n"
        "x = 1\n"
        "```\n"
        "````markdown\n"
        "```python\n"
        "not_run()\n"
        "```\n"
        "````\n"
        "```{code-block} python\n"
        ":caption: A caption\n"
        "\n"
        "y = 2\n"
        "```\n"
        "```pycon\n"
        ">>> x + y\n"
        "3\n"
        "```\n"
        "```\n"
        ">>> x\n"
        "1\n"
        "```\n"
        "```bash\n"
        "pytest\n"
        "```\n"
    )
    blocks = code_blocks(text)
    assert [(block.language, block.line, block.is_doctest) for block in blocks] == [
        ("python", 4, False),
        ("markdown", 7, False),
        ("python", 14, False),
        ("pycon", 17, True),
        ("", 21, True),
        ("bash", 25, False),
    ]
    assert blocks[2].source == "y = 2\n"
