"""Every code block of README.md and docs/**/*.md runs, as a reader would run it (issue #28).

- ```` ```python ```` blocks are executed; ```` ```pycon ```` blocks (``>>>`` sessions) are run by doctest and
  their printed output compared. The blocks of one page share a namespace and run in page order (a
  block first runs the page's earlier blocks it depends on), in a temporary working directory.
- ```` ```bash ```` blocks are run command by command (a ``\\`` continues a line), from the repo root with
  the running interpreter as ``python`` on PATH. A command may write only under ``runs/``, which is
  redirected to a temporary directory, so an example never changes the checkout.
- A block may opt out only with a comment right above it, ``<!-- not run: REASON -->``, whose reason
  starts with one of :data:`NOT_RUN_REASONS`. ``<!-- test: slow -->`` marks a Python block slow (and,
  since they share a namespace, the page's blocks after it); every bash block is slow (each starts
  a Python process that imports torch).

Test ids are ``file:line`` of the block's opening fence.
"""
from __future__ import annotations

import doctest
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

import forkserver

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

RUN_LANGUAGES = {"python", "pycon", "bash"}
SHOWN_LANGUAGES = {"text"}  # diagrams and listings: nothing to run
NOT_RUN_REASONS = {
    "installs packages": "changes the environment the tests run in",
    "needs the network": "a download (a dataset, a Hub weight) or an upload; tests run offline",
    "needs several GPUs": "torchrun over several processes and devices",
    "serves until stopped": "a server such as mkdocs serve",
    "runs the whole test suite": "the suite itself; tests/repository/test_readme.py checks CI runs the "
                                 "README's command",
    "tested by tests/": "the same command runs in the named test",
    "changes the shipped weights": "a maintainer's command that rewrites weights/",
    "takes hours": "a full training or experiment run",
    "needs timm's test file": "a copy of tests/test_models.py from a checkout of timm's repository",
}
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.+?)\s*-->$")
SLOW = re.compile(r"^<!--\s*test:\s*slow\s*-->$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)\s*$")
# Flags and redirections through which a command writes a file: each must point under runs/.
WRITES = re.compile(
    r"(?:--output|--plot|--work-dir|--site-dir)[ =](?P<flag>\S+)|(?<![<>&\d])>{1,2}\s*(?P<redirect>\S+)"
)
RUNS_DIR = re.compile(r"(?<![\w./-])runs/")
COMMAND_TIMEOUT_S = 1200


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: Optional[str] = None  # the stated reason, if the block opts out
    slow: bool = False

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, fence = i, match.group("fence")
        end = next((j for j in range(i + 1, len(lines))
                    if lines[j].startswith(fence) and not lines[j].strip(fence[0]).strip()), None)
        if end is None:
            raise ValueError(f"{page.relative_to(ROOT)}:{start + 1}: code fence never closed")
        above = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        not_run = NOT_RUN.match(above)
        blocks.append(Block(page, start + 1, match.group("lang"), "\n".join(lines[start + 1:end]) + "\n",
                            not_run.group("reason") if not_run else None, bool(SLOW.match(above))))
        i = end + 1
    # Python blocks of a page share a namespace: after a slow one, the rest of the page is slow too
    # (running a later block alone runs the earlier ones first).
    slow = False
    for block in blocks:
        if block.lang in ("python", "pycon"):
            slow = block.slow = slow or block.slow
        elif block.lang == "bash":
            block.slow = True
    return blocks


BLOCKS = [block for page in PAGES for block in parse_blocks(page)]
RUNNABLE = [block for block in BLOCKS if block.lang in RUN_LANGUAGES and block.not_run is None]


def test_the_pages_have_blocks_to_run():
    assert (ROOT / "README.md") in {block.page for block in RUNNABLE}
    assert {"python", "pycon", "bash"} <= {block.lang for block in RUNNABLE}


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.id)
def test_every_block_runs_or_says_why_not(block):
    assert block.lang in RUN_LANGUAGES | SHOWN_LANGUAGES, (
        f"{block.id}: fence language {block.lang!r}; use one of {sorted(RUN_LANGUAGES | SHOWN_LANGUAGES)}")
    if block.not_run is not None:
        assert block.lang in RUN_LANGUAGES, f"{block.id}: a {block.lang!r} block is never run; drop the comment"
        assert any(block.not_run.startswith(reason) for reason in NOT_RUN_REASONS), (
            f"{block.id}: 'not run: {block.not_run}' is not an allowed reason; start it with one of "
            f"{sorted(NOT_RUN_REASONS)}")


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in RUN_LANGUAGES], ids=lambda block: block.id)
def test_no_example_writes_into_the_shipped_weights(block):
    """Issue #28, finding 1: a copied example replaced a shipped weight. Examples write under runs/."""
    writes_weights = re.search(
        r"""(--output|--work-dir|--plot)[ =]["']?(\./)?weights/|save_pretrained\([^)]*["'](\./)?weights/""", block.code
    )
    assert not writes_weights, f"{block.id}: writes into weights/ ({writes_weights.group(0)}); write under runs/"


# ------------------------------------------------------------------------------------------------
# Running the blocks


@dataclass
class PageState:
    """The namespace and working directory the Python blocks of one page share."""
    workdir: Path
    namespace: dict = field(default_factory=lambda: {"__name__": "__doc_example__"})
    outcome: dict = field(default_factory=dict)  # block line -> None (passed) or the failure


_pages: dict[Path, PageState] = {}
_commands: dict[str, tuple[int, str]] = {}  # a command met on several pages runs once


def _page_state(page: Path, tmp_path_factory) -> PageState:
    if page not in _pages:
        _pages[page] = PageState(tmp_path_factory.mktemp(page.stem))
    return _pages[page]


def _run_python(block: Block, state: PageState) -> Optional[str]:
    """Run one Python or pycon block in the page's namespace; the failure as text, or None."""
    cwd = os.getcwd()
    os.chdir(state.workdir)
    try:
        if block.lang == "python":
            # Line numbers in a traceback point into the page: pad the code to the block's position.
            exec(compile("\n" * block.line + block.code, str(block.page), "exec"), state.namespace)
            return None
        test = doctest.DocTestParser().get_doctest(block.code, state.namespace, block.id, str(block.page), block.line)
        report: list[str] = []
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        result = runner.run(test, out=report.append, clear_globs=False)
        state.namespace.update(test.globs)  # a DocTest runs in a copy of the namespace it is given
        return "".join(report) if result.failed else None
    except Exception as error:  # noqa: BLE001 - reported as the test's failure
        import traceback

        return "".join(traceback.format_exception(error))
    finally:
        os.chdir(cwd)


def _python_blocks_up_to(block: Block) -> list[Block]:
    return [b for b in RUNNABLE if b.page == block.page and b.lang in ("python", "pycon") and b.line <= block.line]


def _bash_commands(code: str) -> list[str]:
    commands, current = [], ""
    for line in code.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        commands.append(current + line)
        current = ""
    if current:
        commands.append(current)
    return commands


def _check_writes_under_runs(block: Block, command: str) -> None:
    for match in WRITES.finditer(command):
        target = match.group("flag") or match.group("redirect")
        assert target.strip("'\"").startswith(("runs/", "/dev/null")), (
            f"{block.id}: `{command}` writes {target}; examples write only under runs/ (the test redirects it)")


@pytest.fixture
def offline(monkeypatch):
    """The examples that run must not need the network (the ones that do say so and are not run)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        import huggingface_hub.constants
    except ImportError:
        return
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize(
    "block", [pytest.param(b, marks=pytest.mark.slow) if b.slow else b for b in RUNNABLE], ids=lambda b: b.id)
def test_doc_example(block, tmp_path_factory, offline):
    state = _page_state(block.page, tmp_path_factory)
    if block.lang == "bash":
        _run_bash(block, state)
        return
    for earlier in _python_blocks_up_to(block):
        if earlier.line not in state.outcome:
            state.outcome[earlier.line] = _run_python(earlier, state)
        failure = state.outcome[earlier.line]
        if failure is not None:
            where = "" if earlier is block else f"an earlier block of the page, {earlier.id}, failed:\n"
            pytest.fail(f"{block.id}: {where}{failure}", pytrace=False)


# Outside quotes, these make bash do more than start one program with the words as its arguments.
SHELL_SYNTAX = set("|&;<>()$`\\*?[]{}~!")


def _python_module_argv(command: str) -> Optional[list[str]]:
    """``["-m", MODULE, *ARGS]`` when ``command`` is exactly ``python -m MODULE ARGS...`` (quoting aside; a
    trailing comment allowed): no pipe, redirection, expansion, glob or variable, which only bash would run."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    unquoted, quote = [], None
    for i, char in enumerate(command):
        if quote:
            if char == quote:
                quote = None
            elif quote == '"' and char in "$`\\!":
                return None
        elif char in "'\"":
            quote = char
        elif char == "#":
            if i and not command[i - 1].isspace():
                return None  # part of a word to bash, a comment to shlex
            break  # a comment, to the end of the line
        else:
            unquoted.append(char)
    if SHELL_SYNTAX & set(unquoted) or len(words) < 3 or words[:2] != ["python", "-m"]:
        return None
    return words[1:]


def _run_bash(block: Block, state: PageState) -> None:
    bin_dir = state.workdir / "bin"
    bin_dir.mkdir(exist_ok=True)
    python = bin_dir / "python"  # a wrapper, not a symlink: a venv's python finds its packages by its own path
    if not python.exists():
        python.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
        python.chmod(0o755)
    env = {**os.environ,
           "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    for command in _bash_commands(block.code):
        _check_writes_under_runs(block, command)
        key = shlex.join(shlex.split(command, comments=True))  # the same command, whatever its comment
        if key not in _commands:
            redirected = RUNS_DIR.sub(shlex.quote(str(state.workdir)) + "/runs/", command)
            argv = _python_module_argv(redirected)
            try:
                if argv is not None:  # what bash would run, forked from a process that has imported torch
                    result = forkserver.server(env).run(argv, cwd=ROOT, env=env, timeout=COMMAND_TIMEOUT_S)
                else:
                    result = subprocess.run(["bash", "-o", "pipefail", "-c", redirected], cwd=ROOT, env=env,
                                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                            timeout=COMMAND_TIMEOUT_S)
                _commands[key] = (result.returncode, (result.stdout + result.stderr)[-4000:])
            except subprocess.TimeoutExpired:
                _commands[key] = (124, f"no answer after {COMMAND_TIMEOUT_S} s")
        returncode, output = _commands[key]
        assert returncode == 0, f"{block.id}: `{command}` exited {returncode}:\n{output}"
