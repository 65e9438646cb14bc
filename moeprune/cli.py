"""The `moeprune` command: one entry point, one sub-command per module.

Each sub-command lives in the package that owns it and exposes two functions:
``configure(parser)`` adds its arguments and ``run(args) -> int`` does the work.
Modules are imported only when their command runs, so `moeprune prune` never
imports the web stack and `moeprune serve` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from moeprune.errors import UserError

# The registry of sub-commands: name -> (module, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "prune": ("pruning.commands.prune", "prune experts from an MoE checkpoint"),
    "inspect": ("pruning.commands.inspect", "describe an MoE checkpoint (and its pruning manifest)"),
    "verify": ("pruning.commands.verify", "re-hash a pruned checkpoint against pruning.json"),
    "eval": ("evaluators.commands.eval", "evaluate a variant through an OpenAI-compatible endpoint"),
    "report": ("evaluators.commands.report", "render report cards as an HTML report with plots"),
    "serve": ("app.commands.serve", "serve variants behind the gateway"),
    "demo": ("demo.command", "train, prune, evaluate and serve the embedded demo model"),
    "guard": ("pruning.commands.guard", "build a pruned variant's domain gate (guard build)"),
    "traffic": ("app.telemetry.command", "export routing statistics the gateway gathered (traffic export)"),
    "recertify": (
        "app.commands.recertify",
        "clear a gateway's live reliability fallbacks that feedback supports again",
    ),
}


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, ModuleType | None]:
    from moeprune.version import package_version

    parser = argparse.ArgumentParser(prog="moeprune", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"moeprune {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = argv[0] if argv else None
    module = None
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.configure(sub_parser)
    return parser, module


def flag_hint(parser: argparse.ArgumentParser, command: str, param: str | None) -> str:
    """` (flag --ratio)` when the error names a parameter that the sub-command takes as a flag."""
    if param is None:
        return ""
    module = importlib.import_module(COMMANDS[command][0])
    param = getattr(module, "PARAM_DESTS", {}).get(param, param)  # e.g. out_dir -> --out
    sub_parsers = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    sub_parser = sub_parsers.choices.get(command) if sub_parsers else None
    for action in sub_parser._actions if sub_parser else []:
        if action.dest == param and action.option_strings:
            return f" (flag {action.option_strings[-1]})"
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, module = build_parser(argv)
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 2
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"moeprune {args.command}: error: {exc}{flag_hint(parser, args.command, exc.param)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moeprune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
