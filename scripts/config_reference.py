"""Config reference tables in docs/, generated from the code's signatures and docstrings.

A docs page marks where a table goes::

    <!-- config-reference model configs/pretrain.yaml -->
    ...generated table...
    <!-- /config-reference -->

``model`` or ``data`` says which section of the stage config the table describes; the class is the
``class_path`` that config names. Each ``__init__`` argument gets a row: its key, the default in the
code, the value the config sets (when it sets one) and the meaning from the class docstring's
``Parameters`` section (NumPy style; one entry may name several arguments, ``lr, weight_decay, betas``).

A page may also hold the command list, ``dreamdiffusion --help`` as it prints it::

    <!-- command-reference -->
    ...generated block...
    <!-- /command-reference -->

    python scripts/config_reference.py           # rewrite the tables in docs/
    python scripts/config_reference.py --check   # exit 1 and name each stale table (make docs-check)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- config-reference (model|data) (\S+) -->\n(.*?)<!-- /config-reference -->\n", re.S)
COMMANDS_MARKER = re.compile(r"<!-- command-reference -->\n(.*?)<!-- /command-reference -->\n", re.S)


def parameter_docs(cls: type) -> list[tuple[list[str], str]]:
    """``(argument names, description)`` entries of the ``Parameters`` section of ``cls``'s docstring."""
    doc = inspect.getdoc(cls) or ""
    match = re.search(r"^Parameters\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
    if not match:
        return []
    entries: list[tuple[list[str], str]] = []
    for line in match.group(1).splitlines():
        if line and not line.startswith(" "):
            entries.append(([n.strip() for n in line.split(",")], ""))
        elif entries and line.strip():
            names, text = entries[-1]
            entries[-1] = (names, f"{text} {line.strip()}".strip())
    return entries


def markdown(rst: str) -> str:
    """Docstring markup as Markdown: ````x```` → `` `x` ``, ``:class:`~a.b``` → `` `b` ``, ``:func:`a.b``` → `` `a.b` ``."""
    rst = re.sub(r":\w+:`~?([\w.]+)`", lambda m: f"`{m.group(1)}`" if "~" not in m.group(0) else f"`{m.group(1).rsplit('.', 1)[-1]}`", rst)
    return rst.replace("``", "`")


def literal(value) -> str:
    """A value as it reads in YAML, for a table cell."""
    if dataclasses.is_dataclass(value):
        return f"`{type(value).__name__}()`"
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return f"`{text}`" if text else "`''`"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(section: str, config: str) -> str:
    """The Markdown table of ``section`` (``model``/``data``) of the stage config file ``config``."""
    spec = yaml.safe_load((REPO / config).read_text())[section]
    module, _, name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return f"`{section}.class_path`: `{spec['class_path']}`\n\n" + class_table(cls, section, config, spec.get("init_args") or {})


def class_table(cls: type, section: str, config: str, set_in_config: dict) -> str:
    """Rows for every ``__init__`` argument of ``cls``; an argument the docstring does not describe is an error."""
    parameters = {
        p.name: p for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    entries = parameter_docs(cls)
    described = {n for names, _ in entries for n in names}
    undocumented = [n for n in parameters if n not in described]
    if undocumented:
        raise ValueError(
            f"{cls.__module__}.{cls.__name__}: arguments {undocumented} are not described in the docstring's "
            "Parameters section; document them there"
        )
    rows = [
        f"| key | default | `{config}` | meaning |",
        "|---|---|---|---|",
    ]
    for names, meaning in entries:
        names = [n for n in names if n in parameters]  # a docstring may also describe non-arguments
        if not names:
            continue
        defaults = [
            "required" if parameters[n].default is inspect.Parameter.empty else literal(parameters[n].default) for n in names
        ]
        configured = [literal(set_in_config[n]) if n in set_in_config else "–" for n in names]
        keys = ", ".join([f"`{section}.init_args.{names[0]}`"] + [f"`{n}`" for n in names[1:]])
        configured_cell = ", ".join(configured) if any(c != "–" for c in configured) else ""
        rows.append(f"| {keys} | {cell(', '.join(defaults))} | {cell(configured_cell)} | {cell(markdown(meaning))} |")
    return "\n".join(rows) + "\n"


def command_block() -> str:
    """``dreamdiffusion --help`` as a Markdown code block."""
    from dreamdiffusion.commands import overview

    return f"```text\n$ dreamdiffusion --help\n{overview()}```\n"


def render(page: Path) -> str:
    """The page's text with every marked table (and command list) regenerated."""
    text = page.read_text()
    text = MARKER.sub(
        lambda m: f"<!-- config-reference {m.group(1)} {m.group(2)} -->\n{table(m.group(1), m.group(2))}<!-- /config-reference -->\n",
        text,
    )
    return COMMANDS_MARKER.sub(lambda m: f"<!-- command-reference -->\n{command_block()}<!-- /command-reference -->\n", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is stale")
    parser.add_argument("pages", nargs="*", type=Path, help="docs pages (default: docs/*.md)")
    args = parser.parse_args(argv)
    pages = args.pages or sorted((REPO / "docs").glob("*.md"))
    stale = []
    for page in pages:
        if not (MARKER.search(page.read_text()) or COMMANDS_MARKER.search(page.read_text())):
            continue
        new = render(page)
        if new != page.read_text():
            stale.append(page)
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        names = ", ".join(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p) for p in stale)
        print(f"stale config reference in {names}: run `make docs` (python scripts/config_reference.py)", file=sys.stderr)
        return 1
    if not args.check:
        print(f"config reference: {len(stale)} page(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
