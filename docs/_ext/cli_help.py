"""A tiny Sphinx directive: the ``--help`` text of a command and of each of its subcommands.

Usage in a page::

    .. cli-help:: refbinn.cli:build_parser
       :prog: refbinn

The argument names a function that returns an ``argparse.ArgumentParser``. The
texts are produced at build time, so the page cannot drift from the code.
"""
import argparse
import importlib
import os

from docutils import nodes
from docutils.parsers.rst import Directive, directives

WIDTH = "88"   # argparse wraps to $COLUMNS; fixed so the page does not depend on the terminal


def _subcommands(parser):
    # argparse has no public way to list subparsers; the _SubParsersAction holds them by name.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


class CliHelp(Directive):
    """``.. cli-help:: module:function``: one literal block per (sub)command."""

    required_arguments = 1
    option_spec = {"prog": directives.unchanged}

    def run(self):
        module, _, func = self.arguments[0].partition(":")
        saved = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = WIDTH
        try:
            parser = getattr(importlib.import_module(module), func)()
            prog = self.options.get("prog", parser.prog)
            out = [nodes.literal_block(text=parser.format_help())]
            for name, sub in _subcommands(parser):
                out.append(nodes.rubric(text=f"{prog} {name}"))
                out.append(nodes.literal_block(text=sub.format_help()))
        finally:
            if saved is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = saved
        return out


def setup(app):
    app.add_directive("cli-help", CliHelp)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
