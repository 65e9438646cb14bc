"""Config objects: one pydantic model per command holds every option, its default and its help text.

A library entry point (`run_prune`, ...) takes the model (or the same options as keyword
arguments, validated into it), and its sub-command's argparse flags are generated from the
model's fields, so a default or a help text lives in one place:

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        ratio: float | None = Field(None, description="share of experts to remove")
        mask_file: str | None = Field(None, description="kept experts per layer",
                                      json_schema_extra=cli(flag="--mask", metavar="MASK.json"))

    add_model_arguments(parser, Options)       # --ratio RATIO, --mask MASK.json
    options = model_from_namespace(Options, parser.parse_args(argv))
    options = validate_options(Options, None, {"ratio": "x"}, caller="run")  # UserError(param="ratio")

What the generator derives from a field (override any of it with `cli(...)`):
- flag: `--field-name` (underscores become dashes); the argparse dest is always the field name,
  so a UserError's `param=` finds its flag in the CLI's hint without a renaming table;
- help: the field's `description` ('%' is escaped: descriptions are plain text, not argparse templates);
- default: the field's default (a default_factory is called);
- type: int and float convert; str, Path and anything else stay strings for the model to validate;
  `X | None` is treated as X;
- bool: a flag without a value: `store_true` for a field defaulting to False; `store_false` for one
  defaulting to True, whose flag then defaults to `--no-field-name` (an inversion);
- list[X] / tuple[X, ...]: `nargs="+"` (the element type as above);
- Literal["a", "b"]: `choices`; `cli(choices=...)` gives choices for a field typed more loosely (when
  the library checks the value itself with its own error message, the model should not pre-empt it);
- a field without a default is a required flag.

`cli()` keys: flag, aliases (extra option strings), help, metavar, group (an argument group's
title; groups appear in first-use order), exclusive (a mutually exclusive group's name, inside
the field's group if it has one), nargs, choices, type (a callable), exclude (True: no flag; the
option is for Python callers only).
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from moeprune.errors import UserError

CLI_KEY = "cli"  # the json_schema_extra key that holds a field's command-line metadata
_CLI_KEYS = {"flag", "aliases", "help", "metavar", "group", "exclusive", "nargs", "choices", "type", "exclude"}


def cli(**options: Any) -> dict:
    """A field's `json_schema_extra` with its command-line metadata (see the module docstring)."""
    unknown = set(options) - _CLI_KEYS
    if unknown:
        raise TypeError(f"unknown cli() keys: {', '.join(sorted(unknown))}; valid: {', '.join(sorted(_CLI_KEYS))}")
    # Tuples become lists so the model's JSON schema stays serialisable; callables cannot be in it.
    return {CLI_KEY: {key: list(value) if isinstance(value, tuple) else value for key, value in options.items()}}


def cli_meta(field: FieldInfo) -> dict:
    extra = field.json_schema_extra
    meta = extra.get(CLI_KEY) if isinstance(extra, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def cli_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The model's fields that have a command-line flag, in declaration order."""
    return {name: field for name, field in model.model_fields.items() if not cli_meta(field).get("exclude")}


def _unwrap_optional(annotation):
    """`X | None` -> X; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _scalar_type(annotation):
    """(argparse type, choices) of a non-list annotation: int/float convert, a Literal gives choices."""
    if typing.get_origin(annotation) is Literal:
        values = typing.get_args(annotation)
        kind = type(values[0])
        return (kind if kind in (int, float) else None), list(values)
    if annotation in (int, float):
        return annotation, None
    return None, None  # str, Path, unions: argparse passes the text on, the model validates it


def flag_of(name: str, field: FieldInfo) -> str:
    """The field's main option string: `cli(flag=...)`, else --field-name (--no-field-name for a True bool)."""
    meta = cli_meta(field)
    if "flag" in meta:
        return meta["flag"]
    inverted = _unwrap_optional(field.annotation) is bool and field.default is True
    return ("--no-" if inverted else "--") + name.replace("_", "-")


def help_of(field: FieldInfo) -> str | None:
    """The help text the flag shows: `cli(help=...)` (e.g. for an inverted bool), else the description."""
    return cli_meta(field).get("help", field.description)


def argument_kwargs(name: str, field: FieldInfo) -> tuple[list[str], dict]:
    """The option strings and `add_argument` keywords generated for one field."""
    meta = cli_meta(field)
    annotation = _unwrap_optional(field.annotation)
    flags = [flag_of(name, field), *meta.get("aliases", [])]
    kwargs: dict[str, Any] = {"dest": name}
    text = help_of(field)
    if text is not None:
        kwargs["help"] = text.replace("%", "%%")
    if field.is_required():
        kwargs["required"] = True
    else:
        kwargs["default"] = field.get_default(call_default_factory=True)
    if annotation is bool:
        kwargs["action"] = "store_false" if field.default is True else "store_true"
        return flags, kwargs
    if typing.get_origin(annotation) in (list, tuple):
        element = _unwrap_optional(typing.get_args(annotation)[0]) if typing.get_args(annotation) else str
        kind, choices = _scalar_type(element)
        kwargs["nargs"] = "+"
    else:
        kind, choices = _scalar_type(annotation)
    if kind is not None:
        kwargs["type"] = kind
    if choices is not None:
        kwargs["choices"] = choices
    for key in ("type", "choices", "nargs", "metavar"):
        if key in meta:
            kwargs[key] = meta[key]
    if "metavar" not in kwargs and flags[0].lstrip("-").replace("-", "_") != name:
        kwargs["metavar"] = flags[0].lstrip("-").replace("-", "_").upper()  # --mask -> MASK, not MASK_FILE
    return flags, kwargs


def add_model_arguments(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    *,
    only: list[str] | None = None,
    skip: set[str] | frozenset = frozenset(),
) -> None:
    """Add one argparse argument per field of `model` (but those in `skip` or marked `exclude`).

    `only` adds just those fields, in that order: a command that mixes generated and hand-written
    flags calls this several times to keep its --help order.
    """
    fields = cli_fields(model)
    names = list(fields) if only is None else only
    groups = {group.title: group for group in parser._action_groups}  # reuse a group of an earlier call
    exclusive: dict[str, Any] = {}
    for name in names:
        field = fields[name]  # a KeyError here: `only` names a field that is not a flag
        if name in skip:
            continue
        meta = cli_meta(field)
        target: Any = parser  # the parser, an argument group or a mutually exclusive group
        if meta.get("group"):
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_argument_group(meta["group"])
            target = groups[meta["group"]]
        if meta.get("exclusive"):
            if meta["exclusive"] not in exclusive:
                exclusive[meta["exclusive"]] = target.add_mutually_exclusive_group()
            target = exclusive[meta["exclusive"]]
        flags, kwargs = argument_kwargs(name, field)
        target.add_argument(*flags, **kwargs)


def model_from_namespace(model: type[BaseModel], args: argparse.Namespace, **overrides: Any):
    """The model from parsed arguments: every generated dest, plus `overrides` (CLI-only handling)."""
    values = {name: getattr(args, name) for name in cli_fields(model) if hasattr(args, name)}
    return validate_options(model, None, {**values, **overrides}, caller=f"{model.__name__}")


def validate_options(model: type[BaseModel], config: BaseModel | None, options: dict, *, caller: str):
    """`config` (or the defaults) updated with keyword `options`, validated.

    An unknown option is a TypeError, as for any Python function; a value of the wrong type is a
    UserError naming the parameter (`param=`), so the CLI prints one line with its flag.
    """
    if config is not None and not isinstance(config, model):
        raise TypeError(f"{caller}() takes a {model.__name__} as config, got {type(config).__name__}")
    if config is not None and not options:
        return config
    values = {**(dict(config) if config is not None else {}), **options}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = exc.errors()
        unknown = [str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden"]
        if unknown:
            raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}") from None
        first = errors[0]
        param = str(first["loc"][0]) if first["loc"] else None
        # loc is (field, index..., union member tag...): keep the field and the list indices
        where = (param or caller) + "".join(f"[{part}]" for part in first["loc"][1:] if isinstance(part, int))
        others = len({err["loc"][0] for err in errors if err["loc"]} - {param})
        more = f" (and {others} more)" if others else ""
        got = "" if first["type"] == "missing" else f", got {first['input']!r}"
        raise UserError(f"{where}: {first['msg'][0].lower()}{first['msg'][1:]}{got}{more}", param=param) from None
