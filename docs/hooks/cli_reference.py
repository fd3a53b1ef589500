"""mkdocs hook: write every ``induct`` subcommand's usage, arguments and options into ``cli.md``.

The reference is read from the Typer app itself (``typer.main.get_command``), so it cannot drift
from the code. ``cli.md`` holds one marker per subcommand, ``<!-- induct-reference: NAME -->``;
the build fails when a subcommand has no marker or a marker names no subcommand.
"""

import re

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"<!--\s*induct-reference:\s*([\w-]+)\s*-->")
PAGE = "cli.md"
_DEFAULT = re.compile(r"\s*\[default:\s*(.*?)\]\s*$", re.S)
_REQUIRED = re.compile(r"\s*\[required\]\s*$")


def induct_command():
    """The ``induct`` app as the click group Typer builds from it."""
    import typer.main

    from cli.main import app

    return typer.main.get_command(app)


def subcommands() -> dict:
    """Every subcommand of ``induct`` by name, with a click context to format its help.

    Typer ships its own copy of click, so classes are never compared with ``click``'s; parameters
    are told apart by ``param_type_name``.
    """
    group = induct_command()
    root = group.context_class(group, info_name="induct")
    out = {}
    for name in group.list_commands(root):
        cmd = group.get_command(root, name)
        if cmd is not None and not cmd.hidden:
            out[name] = (cmd, cmd.context_class(cmd, info_name=name, parent=root))
    return out


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _is(p, kind: str) -> bool:
    return p.param_type_name == kind


def _usage(name: str, cmd) -> str:
    parts = [f"induct {name}"]
    if any(_is(p, "option") for p in cmd.params):
        parts.append("[OPTIONS]")
    for p in cmd.params:
        if _is(p, "argument"):
            arg = p.name.upper() + ("..." if p.nargs == -1 else "")
            parts.append(arg if p.required else f"[{arg}]")
    return " ".join(parts)


def command_markdown(name: str, cmd, ctx) -> str:
    """Markdown for one subcommand: usage line, help text, arguments table, options table."""
    lines = [f"```text\n{_usage(name, cmd)}\n```", ""]
    if cmd.help:
        # Typer's docstring convention: paragraphs separated by blank lines; keep them as prose.
        lines += [" ".join(par.split()) + "\n" for par in cmd.help.strip().split("\n\n")]
    args = [p for p in cmd.params if _is(p, "argument")]
    opts = [p for p in cmd.params if _is(p, "option") and not p.hidden]
    if args:
        lines += ["| argument | required | meaning |", "|---|---|---|"]
        for p in args:
            help_text = getattr(p, "help", None) or ""
            lines.append(f"| `{p.name.upper()}` | {'yes' if p.required else 'no'} | "
                         f"{_cell(help_text)} |")
        lines.append("")
    if opts:
        lines += ["| option | default | meaning |", "|---|---|---|"]
        for p in opts:
            record = p.get_help_record(ctx)
            if record is None:
                continue
            decl, help_text = record
            default = "–"
            m = _DEFAULT.search(help_text)
            if m:
                default, help_text = f"`{_cell(m.group(1))}`", help_text[:m.start()]
            if _REQUIRED.search(help_text):
                default, help_text = "required", _REQUIRED.sub("", help_text)
            lines.append(f"| `{_cell(decl)}` | {default} | {_cell(help_text)} |")
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace each ``induct-reference`` marker of ``cli.md`` with that subcommand's reference."""
    if page.file.src_uri != PAGE:
        return markdown
    commands = subcommands()
    named = MARKER.findall(markdown)
    unknown = sorted(set(named) - set(commands))
    missing = sorted(set(commands) - set(named))
    if unknown or missing:
        raise PluginError(f"{PAGE}: markers for commands that do not exist: {unknown}; "
                          f"subcommands with no marker: {missing}")

    def render(m: re.Match) -> str:
        cmd, ctx = commands[m.group(1)]
        return command_markdown(m.group(1), cmd, ctx)

    return MARKER.sub(render, markdown)
