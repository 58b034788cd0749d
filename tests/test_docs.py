"""The README stays a first screen that links to the documentation site, and the site builds strictly.

The CLI reference page is generated from the trainer's argparse parsers (``docs/hooks/cli_reference.py``), so
every command and option of ``python -m trainer`` must appear on it.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _cli_reference():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_is_short_and_gives_the_two_commands_first():
    text = README.read_text()
    assert len(text.encode()) <= 12 * 1024, f"README.md is {len(text.encode())} bytes (at most 12 KB; depth goes to docs/)"
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines() if ln.strip()]
    assert commands == ["make run", "make test"]


def test_readme_links_resolve():
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links to no documentation page"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_cli_reference_lists_every_command_and_option():
    from trainer.cli import COMMANDS, build_parser

    page = _cli_reference().cli_markdown()
    _, subparsers = build_parser()
    for name, sub in subparsers.items():
        assert f"## {name}\n" in page, name
        section = page.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for act in sub._actions:
            for flag in act.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in section, f"{name} {flag} is missing from the CLI reference"
    assert list(subparsers) == list(COMMANDS)


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
                    reason="mkdocs is installed by requirements.txt; this environment has none")
def test_documentation_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    out = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)})
    warnings = [ln for ln in out.stderr.splitlines() if "WARNING" in ln or "ERROR" in ln]
    assert out.returncode == 0, "\n".join(warnings) or out.stderr[-2000:]
    assert (tmp_path / "site" / "cli" / "index.html").exists()
