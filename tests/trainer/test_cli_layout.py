"""The command line's layout: one module per command in trainer/cli, dispatched through one table, fast to start."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "trainer" / "cli"
SHARED = {"__init__.py", "options.py"}


def _help_commands() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "trainer", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return re.search(r"\{([a-z,-]+)\}", out.stdout).group(1).split(",")


def test_every_subcommand_has_its_own_module_in_the_dispatch_table():
    from trainer.cli import COMMANDS

    names = _help_commands()
    assert names == list(COMMANDS), (names, list(COMMANDS))
    for name in names:
        module = COMMANDS[name]
        stem = name.replace("-", "_")
        assert module.__name__ == f"trainer.cli.{stem}", (name, module.__name__)
        assert Path(module.__file__) == CLI / f"{stem}.py"
        assert callable(module.add_parser) and callable(module.run), name
    modules = {p.name for p in CLI.glob("*.py")} - SHARED
    assert modules == {f"{n.replace('-', '_')}.py" for n in names}, "a module in trainer/cli that is no command"


def test_dispatch_is_the_table_not_a_chain_of_ifs():
    tree = ast.parse((CLI / "__init__.py").read_text())
    compares = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Compare) and "command" in ast.unparse(n)]
    assert not compares, compares


def test_command_modules_import_nothing_heavy_at_the_top():
    """``python -m trainer --help`` and argument errors load argparse, not numpy/torch/rasterio."""
    code = ("import sys, trainer.cli\n"
            "print(sorted(m for m in ('numpy', 'torch', 'rasterio', 'lightning', 'yaml', 'core', 'models') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_trainer_modules_stay_below_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "trainer").rglob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long
