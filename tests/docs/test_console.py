"""The guides run as written: every document with console blocks is executed top to bottom.

Each of README.md and docs/*.md that holds a ```console block is one test. The test runs
the document in a fresh sandbox folder, in document order, and compares what each command
prints with what the document shows. The grammar:

* ``<!-- file: PATH -->`` on the line right before a fenced block (any language): the
  block's text is written to PATH in the sandbox, when the document reaches it. A later
  block for the same PATH replaces the file: this is how a guide's edits happen.
* A ```console block: each line starting with ``$ `` is a command, run with bash in the
  sandbox; a command line ending in ``\\`` goes on with the next line. The lines after it,
  up to the next ``$ `` line or the end of the block, are its expected output (stdout and
  stderr merged, as a terminal shows them). The working folder and exported variables
  carry over from one command to the next within a document.
* ``<!-- shell: COMMAND -->`` (hidden from readers): COMMAND is run there, its output is
  not compared. For an edit the prose describes; use sparingly, prefer a file block.
* ``<!-- not run: REASON -->`` right before a console block: the block is not run (only
  for what cannot run in a test: long-lived servers, docker). Say why.
* ``<!-- exit: N -->`` right before a console block: each command of the block must exit
  with code N. Otherwise a command must exit with 0, unless the first line of its shown
  output starts with ``error:``, and then it must exit with a code other than 0.
* Any other ``<!-- ... -->`` comment is ignored.

The sandbox: the document runs in a fresh folder with a throwaway virtual environment
in ``./.venv`` (first on PATH, so ``python``, ``pip`` and ``skyledger`` are its own;
``skyledger`` runs ``runners.cli:main``, the console script of pyproject.toml). A
``.pth`` file lets it import the packages of the environment running the tests and this
checkout's skyledger, so nothing needs installing, and what a document installs goes
into the sandbox only. ``SKYLEDGER`` is the repository's root, ``COLUMNS=100`` fixes the
width of tables, and no ``SKYLEDGER_*`` setting leaks in. Documents run two at a time.

Before comparing, both sides are normalised, line by line: the repository's path becomes
``$SKYLEDGER`` and the sandbox's ``.``; runs of 8 or more hex digits (run ids, hashes)
``<hex>``, but a hex run must stand for the same printed one wherever it recurs in a
command's output (three equal job hashes stay equal); durations (``0.94s``, ``in 1.2
s``) and times (``2026-11-25 10:11:12``) become placeholders; a traceback's line numbers
and its ``^^^`` marker lines are dropped; trailing blanks, and blank lines at either end
of an output (a progress bar that vanished leaves one), are stripped. In a line of a
table (box-drawing characters) the box-drawing characters and runs of spaces count as
one space, so the width of a column does not matter, but every word and count does. A
line that is exactly ``...`` in the document matches any number of lines, and ``...``
inside a line any text (doctest's ELLIPSIS): for what differs between machines (a host
name) or what is too long to show.

To bring a document's outputs up to date with the code, run this file:
``.venv/bin/python tests/docs/test_console.py docs/jobs.md`` rewrites the shown output
of each command that no longer matches (with table widths compared too) with what it
printed now, paths replaced as above, and prints how long each command took
(``DOCS_SANDBOX=DIR`` keeps the sandbox in DIR to look at). Read the diff before
committing it: it is what readers will see; keep the ``...`` you wrote.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = 100
COMMAND_TIMEOUT_S = 300

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<lang>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>file|shell|not run|exit):\s*(?P<arg>.*?)\s*-->\s*$")
BOX = re.compile(r"[\u2500-\u257f]")
HEX = re.compile(r"(?<![\w.])[0-9a-f]{8,}(?!\w)")
DURATION = re.compile(r"\b(?:in \d+(?:\.\d+)? ?s|\d+\.\d+s)\b")
TIME = re.compile(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
TRACEBACK_LINE = re.compile(r'^(\s*File ".*", line )\d+')
CARETS = re.compile(r"^\s*[\^~]+\s*$")


def documents() -> list[Path]:
    """Return README.md and docs/*.md, those that hold a console block."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [p for p in found if re.search(r"^\s*```console\s*$", p.read_text(), re.M)]


@dataclass
class Step:
    """One thing a document does, in order: write a file, run a hidden or shown command."""

    kind: str  # "file", "shell" or "command"
    line: int  # where in the document (1-based), for messages
    path: str = ""  # file: where to write
    text: str = ""  # file: what to write; command/shell: the command
    expected: list[str] = field(default_factory=list)  # command: the shown output
    exit: int | None = None  # command: the exit code asked for by <!-- exit: N -->
    span: tuple[int, int, str] = (0, 0, "")  # command: output lines [start, end), indent


def parse(text: str) -> list[Step]:
    """Return the steps of a document (see the module docstring for the grammar)."""
    lines = text.split("\n")
    steps: list[Step] = []
    pending: tuple[str, str, int] | None = None  # a marker waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line)
        fence = FENCE.match(line)
        if marker:
            kind, arg = marker["kind"], marker["arg"]
            if kind == "shell":
                steps.append(Step("shell", i + 1, text=arg))
            else:
                pending = (kind, arg, i + 1)
            i += 1
            continue
        if not fence:
            if pending and line.strip():
                raise ValueError(
                    f"line {pending[2]}: <!-- {pending[0]}: --> is not right before a fenced block"
                )
            pending = None if line.strip() else pending
            i += 1
            continue
        indent, lang = fence["indent"], fence["lang"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence["fence"]:
            end += 1
        if end == len(lines):
            raise ValueError(f"line {i + 1}: the fenced block is not closed")
        body = [
            b[len(indent) :] if b.startswith(indent) else b.lstrip() for b in lines[i + 1 : end]
        ]
        kind, arg = (pending[0], pending[1]) if pending else ("", "")
        if kind == "file":
            steps.append(Step("file", i + 1, path=arg, text="\n".join(body) + "\n"))
        elif lang == "console" and kind != "not run":
            steps.extend(_commands(body, i + 2, indent, int(arg) if kind == "exit" else None))
        pending = None
        i = end + 1
    if pending:
        raise ValueError(f"line {pending[2]}: <!-- {pending[0]}: --> is not right before a block")
    return steps


def _commands(body: list[str], first: int, indent: str, exit_code: int | None) -> list[Step]:
    """Return the commands of a console block whose first line is document line ``first``."""
    steps: list[Step] = []
    j = 0
    while j < len(body):
        if not body[j].startswith("$ "):
            raise ValueError(f"line {first + j}: a console block starts with a '$ ' command")
        start = j
        command = body[j][2:]
        while command.endswith("\\") and j + 1 < len(body):
            j += 1
            command = command + "\n" + body[j]
        j += 1
        out_start = j
        while j < len(body) and not body[j].startswith("$ "):
            j += 1
        steps.append(
            Step(
                "command",
                first + start,
                text=command,
                expected=body[out_start:j],
                exit=exit_code,
                span=(first - 1 + out_start, first - 1 + j, indent),
            )
        )
    return steps


class Sandbox:
    """A folder with its own virtual environment, where a document's commands run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cwd = folder
        self.venv = folder / ".venv"
        self.state = folder.parent / f"{folder.name}-exports.sh"
        self._cwd_file = folder.parent / f"{folder.name}-cwd"
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(self.venv)],
            check=True,
            capture_output=True,
        )
        python = self.venv / "bin" / "python"
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        ours = sysconfig.get_paths()["purelib"]  # skyledger (editable) and its dependencies
        pth = f"import site, sys; site.addsitedir({ours!r}); sys.path.append({str(ROOT)!r})\n"
        Path(site, "skyledger-tests.pth").write_text(pth)  # ROOT: this checkout's skyledger
        commands = (("skyledger", "skyledger.runners.cli"), ("pip", "pip._internal.cli.main"))
        for name, module in commands:
            script = self.venv / "bin" / name
            script.write_text(
                f"#!{python}\nimport sys\nfrom {module} import main\nsys.exit(main())\n"
            )
            script.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(self.venv),
            SKYLEDGER=str(ROOT),
            COLUMNS=str(COLUMNS),
            PYTHONUNBUFFERED="1",
            NO_COLOR="1",
        )
        self.env = env

    def run(self, command: str) -> tuple[int, str]:
        """Run a command as a reader would at this point of the document: return the exit
        code and the output, stdout and stderr merged."""
        script = (
            f"[ -f {_q(self.state)} ] && . {_q(self.state)}\n"
            f"cd {_q(self.cwd)} || exit 99\n"
            f"{command}\n"
            "__rc=$?\n"
            f"pwd > {_q(self._cwd_file)}; export -p > {_q(self.state)}\n"
            "exit $__rc\n"
        )
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=COMMAND_TIMEOUT_S,
        )
        if self._cwd_file.exists():
            self.cwd = Path(self._cwd_file.read_text().strip())
        return done.returncode, done.stdout.decode(errors="replace")

    def write(self, path: str, text: str) -> None:
        target = self.cwd / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def paths(self, line: str) -> str:
        """Replace the repository's path with $SKYLEDGER and the sandbox's with '.'."""
        for real, shown in ((self.folder, "."), (ROOT, "$SKYLEDGER")):
            for form in dict.fromkeys((str(real.resolve()), str(real))):
                line = line.replace(form, shown)
        return line


_NOT_INHERITED = (
    "SKYLEDGER",
    "PYTEST_",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "FORCE_COLOR",
    "COLUMNS",
    "LINES",
    "TTY_",
)


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


def normalise(line: str, tables: bool = True) -> str:
    """Return a line as it is compared: see the module docstring. With ``tables`` false,
    a table's columns keep their width."""
    line = HEX.sub("<hex>", line)
    line = DURATION.sub("<duration>", line)
    line = TIME.sub("<time>", line)
    line = TRACEBACK_LINE.sub(r"\1<n>", line)
    if tables and BOX.search(line):
        line = " ".join(BOX.sub(" ", line).split())
    elif tables and line.strip().startswith("run <hex> (job <hex>)"):
        line = line.strip()  # a table's title is centred over it: its width moves it
    return line.rstrip()


def kept(lines: list[str]) -> list[str]:
    """Return the lines that are compared: without marker-only lines (``^^^``) and blank
    lines at either end (a progress bar that vanished leaves an empty line)."""
    lines = [x for x in lines if not CARETS.match(x)]
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return lines


def comparable(lines: list[str], tables: bool = True) -> list[str]:
    """Return the lines as they are compared."""
    return [normalise(x, tables) for x in kept(lines)]


def matches(expected: list[str], actual: list[str], tables: bool = True) -> bool:
    """True if the actual lines match the expected ones: '...' alone on a line matches any
    lines, in a line any text; a hex run stands for the same hex run wherever it recurs."""
    shown, printed = kept(expected), kept(actual)
    want, got = [normalise(x, tables) for x in shown], [normalise(x, tables) for x in printed]
    memo: dict[tuple[int, int], tuple[tuple[int, int], ...] | None] = {}

    def match(i: int, j: int) -> tuple[tuple[int, int], ...] | None:
        """Return an alignment of want[i:] with got[j:], as pairs of lines, or None."""
        if (i, j) not in memo:
            found: tuple[tuple[int, int], ...] | None = None
            if i == len(want):
                found = () if j == len(got) else None
            elif want[i] == "...":
                found = next(
                    (m for k in range(j, len(got) + 1) if (m := match(i + 1, k)) is not None), None
                )
            elif j < len(got) and same(want[i], got[j]):
                rest = match(i + 1, j + 1)
                found = None if rest is None else ((i, j), *rest)
            memo[i, j] = found
        return memo[i, j]

    pairs = match(0, 0)
    return pairs is not None and _one_to_one([(shown[i], printed[j]) for i, j in pairs])


def _one_to_one(pairs: list[tuple[str, str]]) -> bool:
    """True if the hex runs of the shown lines map one to one onto the printed ones."""
    forward: dict[str, str] = {}
    backward: dict[str, str] = {}
    for shown, printed in pairs:
        a, b = HEX.findall(shown), HEX.findall(printed)
        if len(a) != len(b):  # a '...' in the line took some
            continue
        for x, y in zip(a, b, strict=True):
            if forward.setdefault(x, y) != y or backward.setdefault(y, x) != x:
                return False
    return True


def same(expected: str, actual: str) -> bool:
    """True if a line matches, where '...' in the expected line matches any text."""
    if "..." not in expected:
        return expected == actual
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


@dataclass
class Outcome:
    """What a command did beside what the document shows."""

    step: Step
    code: int
    output: list[str]  # paths replaced, otherwise as printed
    problem: str  # "" when it matched
    seconds: float = 0.0


def run_document(doc: Path, folder: Path) -> list[Outcome]:
    """Run a document's steps in a sandbox at ``folder``; return every command's outcome."""
    sandbox = Sandbox(folder)
    outcomes = []
    for step in parse(doc.read_text()):
        if step.kind == "file":
            sandbox.write(step.path, step.text)
            continue
        started = time.monotonic()
        code, output = sandbox.run(step.text)
        seconds = time.monotonic() - started
        if step.kind == "shell":
            if code != 0:
                raise AssertionError(
                    f"{doc.name} line {step.line}: <!-- shell: {step.text} --> "
                    f"exited with {code}:\n{output}"
                )
            continue
        printed = [sandbox.paths(x) for x in output.rstrip("\n").split("\n")] if output else []
        problem = ""
        if not matches(step.expected, printed):
            problem = "the output differs"
        want_error = bool(step.expected) and step.expected[0].startswith("error:")
        if step.exit is not None and code != step.exit:
            problem = f"exit code {code}, the document asks for {step.exit}"
        elif step.exit is None and want_error and code == 0:
            problem = "exit code 0, but the document shows an error"
        elif step.exit is None and not want_error and code != 0:
            problem = f"exit code {code}"
        outcomes.append(Outcome(step, code, printed, problem, seconds))
    return outcomes


def report(doc: Path, outcome: Outcome) -> str:
    """Return a failure message: the command, and a diff of shown and printed output."""
    step = outcome.step
    diff = difflib.unified_diff(
        comparable(step.expected),
        comparable(outcome.output),
        "shown in the document",
        "printed (normalised)",
        lineterm="",
    )
    return (
        f"{doc.relative_to(ROOT)} line {step.line}: $ {step.text}\n{outcome.problem}\n"
        + "\n".join(diff)
        + "\n--- printed, as is:\n"
        + "\n".join(outcome.output)
    )


PARALLEL = 2
"""Documents run at once: most of their time is the CPU of separate processes."""


@pytest.fixture(scope="module")
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Path, Future[list[Outcome]]]]:
    """Start every document this session tests, the longest first, PARALLEL at a time."""
    wanted = [
        item.callspec.params["doc"]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.originalname == "test_the_document_runs_as_written"
    ]
    wanted.sort(key=lambda doc: -doc.read_text().count("\n$ skyledger"))
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {
            doc: pool.submit(run_document, doc, tmp_path_factory.mktemp(doc.stem) / "sandbox")
            for doc in wanted
        }
        yield futures
        for future in futures.values():
            future.cancel()


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_document_runs_as_written(
    doc: Path, running: dict[Path, Future[list[Outcome]]]
) -> None:
    failed = [o for o in running[doc].result() if o.problem]
    assert not failed, "\n\n".join(report(doc, o) for o in failed)


def test_the_tutorial_and_the_guides_are_run() -> None:
    names = {p.name for p in documents()}
    assert {"tutorial.md", "jobs.md", "operators.md", "simulate.md"} <= names


def test_the_grammar() -> None:
    steps = parse(
        "text\n<!-- file: a/b.txt -->\n```yaml\nx: 1\n```\n<!-- shell: touch c -->\n"
        "<!-- exit: 2 -->\n```console\n$ one \\\n  two\nout 1\n...\n$ three\n```\n"
        "<!-- not run: a server -->\n```console\n$ serve\n```\n"
    )
    assert [(s.kind, s.path or s.text) for s in steps] == [
        ("file", "a/b.txt"),
        ("shell", "touch c"),
        ("command", "one \\\n  two"),
        ("command", "three"),
    ]
    assert steps[0].text == "x: 1\n"
    assert steps[2].expected == ["out 1", "..."]
    assert steps[2].exit == steps[3].exit == 2
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "..."], ["a"])
    assert not matches(["a", "...", "d"], ["a", "b"])
    assert normalise("│ run 1a2b3c4d5e6f  │    12 │") == "run <hex> 12"
    assert matches(
        ["1a2b3c4d5e6f x", "1a2b3c4d5e6f", "ffffffff0"],
        ["aaaaaaaaaaaa x", "aaaaaaaaaaaa", "bbbbbbbbbbbb"],
    )
    assert not matches(["1a2b3c4d5e6f", "1a2b3c4d5e6f"], ["aaaaaaaa", "bbbbbbbb"])
    assert not matches(["1a2b3c4d5e6f", "ffffffff"], ["aaaaaaaa", "aaaaaaaa"])
    assert matches(["│ x │ ... │ 3 │"], ["│ x │ vm │ 3 │"])
    assert normalise("│ alerts read │    12 │") != normalise("│ alerts read │    13 │")
    assert normalise("5 passed in 0.94s") == "5 passed <duration>"
    assert normalise("slope 0.06812978311273234") == "slope 0.06812978311273234"
    with pytest.raises(ValueError, match="not right before"):
        parse("<!-- file: x -->\nprose\n```\n```\n")


def _update(doc: Path) -> int:
    """Run a document and write each command's new output where it no longer matches."""
    import tempfile

    lines = doc.read_text().split("\n")
    keep = os.environ.get("DOCS_SANDBOX")  # a folder to keep the sandbox in, to look at
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run_document(doc, Path(keep) if keep else Path(tmp) / "sandbox")
    changed = 0
    for outcome in outcomes:
        print(
            f"{outcome.seconds:5.1f} s  line {outcome.step.line}: $ {outcome.step.text}",
            file=sys.stderr,
        )
    for outcome in reversed(outcomes):
        if outcome.problem:
            print(report(doc, outcome), file=sys.stderr)
        if not matches(outcome.step.expected, outcome.output, tables=False):
            start, end, indent = outcome.step.span
            shown = list(outcome.output)
            while shown and not shown[0].strip():
                shown.pop(0)
            lines[start:end] = [(indent + x).rstrip() for x in shown]
            changed += 1
    doc.write_text("\n".join(lines))
    print(f"{doc}: {changed} outputs rewritten", file=sys.stderr)
    return 1 if any(o.problem and "exit" in o.problem for o in outcomes) else 0


if __name__ == "__main__":
    if not sys.argv[1:] or shutil.which("bash") is None:
        raise SystemExit(f"usage: {sys.argv[0]} DOCUMENT.md ... (rewrites their outputs)")
    raise SystemExit(max(_update(Path(arg).resolve()) for arg in sys.argv[1:]))
