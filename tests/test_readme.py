"""Every ```python block of README.md runs as written, so the README's recipes cannot rot.

Each block runs on its own, as a script in a fresh Python process, from an empty
temporary folder (files it writes, e.g. guard.npz or results/, land there), with a
time limit and one CPU thread; a block must therefore define what it uses. A block that needs what
the test run cannot provide (a running redis-server, a cluster, a GPU, the whole
default run) is opted out by an HTML comment on the line right before it (blank
lines allowed between), which GitHub does not render:

    <!-- readme-test: skip: needs a running redis-server -->
    ```python
    ...
    ```

The reason is required and shown in the test report. Skipped blocks are still
compiled, so their syntax is checked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(\S.*?)\s*-->\s*$")
TIMEOUT_S = 300


def readme_blocks() -> list[tuple[int, str, str | None]]:
    """(line number, code, skip reason or None) for every ```python block of the README."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        blocks.append((line, match.group(1), skip.group(1) if skip else None))
    return blocks


BLOCKS = readme_blocks()


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("line, code, skip", BLOCKS, ids=[f"README.md:{line}" for line, _, _ in BLOCKS])
def test_readme_block_runs_as_written(line, code, skip, tmp_path):
    compile(code, f"README.md:{line}", "exec")
    if skip is not None:
        pytest.skip(f"README.md:{line}: {skip}")
    script = tmp_path / "readme_block.py"
    script.write_text(code, encoding="utf-8")
    # One thread per block: on a shared machine, torch's thread pool spinning against other processes made
    # the Attacks block six times slower (120 s against 20 s); the answers do not depend on it.
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "MGF_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, f"README.md:{line} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_skip_markers_are_read(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("text\n<!-- readme-test: skip: needs a running redis-server -->\n\n```python\nimport redis\n"
                      "```\n\n```python\nprint(1)\n```\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "README", readme)
    assert readme_blocks() == [(4, "import redis\n", "needs a running redis-server"), (8, "print(1)\n", None)]
