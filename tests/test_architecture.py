"""The size limits of the code, checked by its syntax tree: no module over 400 lines, no class
over 300 (CONTRIBUTING: split by reason of change, one part per reason)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("booth_ctl", "drivers", "sim_hw")
MODULE_MAX_LINES = 400
CLASS_MAX_LINES = 300


def _modules() -> Iterator[Path]:
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _classes(tree: ast.Module) -> Iterator[ast.ClassDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            yield node


def _too_big(path: Path, rel: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    problems = []
    lines = len(text.splitlines())
    if lines > MODULE_MAX_LINES:
        problems.append(f"{rel}: {lines} lines (at most {MODULE_MAX_LINES})")
    for cls in _classes(tree):
        n = (cls.end_lineno or cls.lineno) - cls.lineno + 1
        if n > CLASS_MAX_LINES:
            problems.append(f"{rel}:{cls.lineno}: class {cls.name}: {n} lines (at most "
                            f"{CLASS_MAX_LINES})")
    return problems


def test_no_module_or_class_is_over_its_size_limit() -> None:
    problems = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        problems += _too_big(path, rel)
    assert not problems, "split by reason of change:\n" + "\n".join(problems)


def test_the_check_sees_a_big_class(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(CLASS_MAX_LINES))
    path = tmp_path / "big.py"
    path.write_text(f"class Big:\n{body}\n", encoding="utf-8")
    assert _too_big(path, "big.py") == [
        f"big.py:1: class Big: {CLASS_MAX_LINES + 1} lines (at most {CLASS_MAX_LINES})"
    ]


def test_the_daemon_loads_the_hmi_and_gem_links_only_when_configured() -> None:
    """Their web server and codec are a quarter of the supervisor's memory: a booth with neither
    configured does not carry them (the daemon imports them where it starts them)."""
    probe = (
        "import sys, booth_ctl.cli, booth_ctl.runtime._daemon\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'secsgem')\n"
        "      or m.startswith(('booth_ctl.links.hmi', 'booth_ctl.links.gem'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout
