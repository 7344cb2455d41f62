"""The README's examples, run as written: every ```console block, in a fresh copy of the repository.

Convention: a ```console block is a terminal session that must work on a fresh clone with no
API key (the `local` backend). Each `$ ` line is a command, run with bash in the copy; it must
exit 0, unless it ends with `# exit N`. The lines under it are what the README promises the
command prints (stdout and stderr together): each must appear, in order, in what it really
prints. Lines may be left out, and `...` inside a line stands for anything. What differs from
one run to the next is matched loosely: run, batch and file ids (an id the README shows is bound
to the real one, so a later command that names it gets the real id), timestamps, and how many
status polls a run took. ```bash, ```sh and plain blocks are illustrations and are not run.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchrunner.catalog import Catalog

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```console\n(.*?)^```", re.S | re.M)
EXIT = re.compile(r"#\s*exit (\d+)\s*$")
VOLATILE = re.compile(
    r"(?P<id>\b(?:msgbatch|file)_[A-Za-z0-9]+|\b[a-z0-9_-]+-\d{8}T\d{6}Z(?:-\d+)?)"
    r"|(?P<time>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})"
    r"|(?P<polls>\d+ status polls? \([\d.]+ per batch\))"
)


def sessions(readme: str) -> list[list[tuple[str, list[str]]]]:
    """Each console block as (command, promised lines) pairs."""
    blocks = []
    for body in BLOCK.findall(readme):
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif line.strip() and steps:
                steps[-1][1].append(line)
        blocks.append(steps)
    return blocks


class Ids:
    """README ids bound to the real ones, in order of appearance."""

    def __init__(self) -> None:
        self.real: dict[str, str] = {}

    def command(self, text: str) -> str:
        return VOLATILE.sub(lambda m: self.real.get(m.group(), m.group()) if m["id"] else m.group(), text)

    def pattern(self, promised: str) -> tuple[re.Pattern[str], list[str]]:
        """A regex for one promised line (whitespace runs match any whitespace), and the README ids
        it binds, in the order of its groups."""
        parts, binds, at = [], [], 0
        for m in VOLATILE.finditer(promised):
            parts.append(_literal(promised[at : m.start()]))
            if m["id"] and m.group() in self.real:
                parts.append(re.escape(self.real[m.group()]))
            elif m["id"]:
                parts.append(r"(\S+)")
                binds.append(m.group())
            elif m["time"]:
                parts.append(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")
            else:
                parts.append(r"\d+ status polls? \([\d.]+ per batch\)")
            at = m.end()
        parts.append(_literal(promised[at:]))
        return re.compile("".join(parts)), binds


def _literal(text: str) -> str:
    """`...` matches anything, a run of whitespace any whitespace, the rest itself."""
    return ".*".join(
        "".join(r"\s+" if part.isspace() else re.escape(part) for part in re.split(r"(\s+)", chunk) if part)
        for chunk in text.split("...")
    )


def check(command: str, promised: list[str], printed: str, ids: Ids) -> None:
    lines = printed.splitlines()
    at = 0
    for line in promised:
        if line.strip() == "...":
            continue
        pattern, binds = ids.pattern(line.strip())
        while at < len(lines) and not (found := pattern.fullmatch(" ".join(lines[at].split()))):
            at += 1
        assert at < len(lines), f"`{command}` did not print, in order:\n  {line}\nIt printed:\n{printed}"
        ids.real.update(zip(binds, found.groups(), strict=True))
        at += 1


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The repository's user-facing files, as a fresh clone has them: no state home, no results."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(REPO / name, copy / name)
    for folder in ("jobs", "samples"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_the_readme_has_console_examples():
    blocks = sessions((REPO / "README.md").read_text())
    assert len(blocks) >= 3
    assert any(command.startswith("batchrunner submit") for block in blocks for command, _ in block)


@pytest.mark.parametrize("index", range(len(sessions((REPO / "README.md").read_text()))))
def test_a_readme_console_example_runs_as_written(clone, index):
    steps = sessions((clone / "README.md").read_text())[index]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
    env |= {"PYTHONUNBUFFERED": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    ids = Ids()
    for command, promised in steps:
        expected = int(found[1]) if (found := EXIT.search(command)) else 0
        real = ids.command(command)
        done = subprocess.run(["bash", "-c", real], cwd=clone, env=env, check=False,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        assert done.returncode == expected, f"`{real}` exited {done.returncode}, not {expected}:\n{done.stdout}"
        check(real, promised, done.stdout, ids)


LIBRARY_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
RUN_BLOCK = """
import ast, asyncio, sys
source = open(sys.argv[1]).read()
code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
scope = {"__name__": "__main__"}
awaited = eval(code, scope)
if awaited is not None:
    asyncio.run(awaited)
for call in sys.argv[2:]:
    print(eval(call, scope))
"""


def library_examples(readme: str) -> list[str]:
    """The ```python blocks of the README's "Python library" section, which must run as written."""
    section = readme.split("\n## Python library\n", 1)[1].split("\n## ", 1)[0]
    return LIBRARY_BLOCK.findall(section)


def run_python(clone: Path, block: str, *calls: str, pythonpath: Path | None = None) -> str:
    (clone / "example.py").write_text(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run([sys.executable, "-c", RUN_BLOCK, "example.py", *calls], cwd=clone, env=env, check=False,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_readme_notebook_example_runs_as_written(clone):
    notebook, _airflow = library_examples((clone / "README.md").read_text())
    printed = run_python(clone, notebook)
    code, rows, counts = printed.split(" ", 2)
    assert (code, rows) == ("0", "40")
    assert sum(ast.literal_eval(counts).values()) == 40


def test_every_model_the_readme_puts_in_a_job_is_one_the_api_still_serves():
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"^\s*model[:=] ?\"?([a-z0-9.-]+)", "\n".join(re.findall(r"^```(?:yaml|python)\n(.*?)^```", readme, re.S | re.M)), re.M))
    catalog = Catalog.default()

    assert named and {model: getattr(catalog.resolve(model), "lifecycle", "unknown") for model in named} == dict.fromkeys(named, "active")


def test_the_readme_files_example_runs_as_written(clone):
    (block,) = [block for block in LIBRARY_BLOCK.findall((clone / "README.md").read_text()) if "files.connect(" in block]
    (clone / "report.pdf").write_bytes(b"%PDF-1.4\n% a report\n%%EOF\n")

    printed = run_python(clone, block + "print(meta['filename'], len(every))\n").splitlines()

    assert printed[0].endswith("FileNotDownloadableError"), "an uploaded file cannot be downloaded, as on the API"
    assert printed[1] == "report.pdf 1"
    assert not (clone / "copy.pdf").exists()


def test_the_readme_airflow_example_runs_and_a_retried_task_continues_its_run(clone, tmp_path):
    _notebook, airflow = library_examples((clone / "README.md").read_text())
    stub = tmp_path / "stub" / "airflow"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    (stub / "decorators.py").write_text("def task(function):\n    return function\n")
    printed = run_python(clone, airflow, 'label_reviews("2026-12-01")', 'label_reviews("2026-12-01")', pythonpath=stub.parent)
    first, again = (ast.literal_eval(line) for line in printed.splitlines())
    assert first == again and first["succeeded"] == 300
    import pyarrow.parquet as pq

    assert pq.read_table(clone / "results" / "reviews-2026-12-01.parquet").num_rows == 300
    runs = [p.name for p in (clone / ".batchrunner" / "runs").iterdir()]
    assert runs == ["reviews-2026-12-01"]
