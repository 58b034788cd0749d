"""mkdocs hook: the CLI reference page (``cli.md``) generated from the trainer's argparse parsers.

Every command of :data:`trainer.cli.COMMANDS` gets a section with its description, usage line and a table of
its options (flags, default, help), so the page never drifts from ``python -m trainer COMMAND --help``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cell(text: object) -> str:
    """One Markdown table cell / paragraph from argparse or docstring text (reST roles and literals made Markdown)."""
    text = re.sub(r":(?:mod|func|class|data|meth):`~?([^`]+)`", r"`\1`", str(text)).replace("``", "`")
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| option | default | what |", "|---|---|---|"]
    for act in parser._actions:  # argparse exposes no public list of actions
        if isinstance(act, argparse._HelpAction) or act.help == argparse.SUPPRESS:
            continue
        flags = ", ".join(f"`{f}`" for f in act.option_strings) or f"`{act.metavar or act.dest}` (positional)"
        if act.choices:
            flags += " {" + ", ".join(str(c) for c in act.choices) + "}"
        default = "" if act.default in (None, argparse.SUPPRESS, False) or act.required else f"`{act.default}`"
        what = _cell(act.help or "") + (" **(required)**" if act.required and act.option_strings else "")
        rows.append(f"| {flags} | {default} | {what} |")
    return rows


def cli_markdown() -> str:
    """The CLI reference as Markdown: one section per ``python -m trainer`` command, in ``--help`` order."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from trainer.cli import COMMANDS, build_parser

    _, subparsers = build_parser()
    out = ["# Command line reference", "",
           "Generated from the argparse parsers of `python -m trainer` (`trainer/cli/`) when the site is built;",
           "`python -m trainer COMMAND --help` prints the same.", ""]
    out += [f"- [`{name}`](#{name})" for name in COMMANDS] + [""]
    for name, sub in subparsers.items():
        sub.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=100)
        out += [f"## {name}", "", _cell(sub.description or COMMANDS[name].__doc__.strip().splitlines()[0]), "",
                "```text", sub.format_usage().strip(), "```", "", *_options(sub), ""]
    return "\n".join(out)


def on_files(files, config):
    """Add the generated ``cli.md`` to the site's files (the mkdocs ``on_files`` event)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, "cli.md", content=cli_markdown()))
    return files
