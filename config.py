"""Typed configuration: plain `key = value` config files plus `--key=value` overrides.

A config file is read as data, never executed: each line must be `name = expression`, where the
expression uses only literals, arithmetic and names assigned earlier in the same file (so nanoGPT's
`gradient_accumulation_steps = 5 * 8` works). Anything else (calls, attribute access, loops) is an
error. This is why a config file from a stranger is safe to run.

Every key belongs to a field of a dataclass; an unknown key or a wrong type is a one-line
`UserError` that suggests the closest valid key or the expected type.
"""

import ast
import dataclasses
import difflib
import functools
import inspect
import operator
import re
import sys
import types
import typing
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix: printed as one line, without a traceback."""


def run_main(main):
    """Run a script's main(); turn a UserError into `error: ...` on stderr and exit code 2, Ctrl-C into 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:  # Ctrl-C: no traceback; 130 is the shell's code for death by SIGINT
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper


# ----------------------------------------------------------------------------------------------
# reading a config file as data

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARYOPS = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
# Statements nanoGPT's own config files contain that carry no setting (`import time`, a docstring).
# A bare expression is skipped only when it is a constant: a call such as `print(...)` is code.
def _ignored_statement(stmt):
    return isinstance(stmt, (ast.Import, ast.ImportFrom)) or (
        isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))


def _eval_node(node, names, where):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise UserError(f"{where}: name '{node.id}' is not defined earlier in the file")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval_node(node.left, names, where), _eval_node(node.right, names, where))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARYOPS:
        return _UNARYOPS[type(node.op)](_eval_node(node.operand, names, where))
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval_node(e, names, where) for e in node.elts]
    raise UserError(f"{where}: only literals and arithmetic are allowed in a config file "
                    f"(found `{ast.unparse(node)}`)")


def read_config_file(path, ignored=()):
    """Return {key: value} from a `key = value` config file, without executing it.

    Keys in `ignored` are skipped unevaluated: nanoGPT's finetune config sets
    `wandb_run_name = 'ft-' + str(time.time())`, which is code, for a setting we do not use.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file '{path}' not found; see config/ for the available ones")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a valid `key = value` config file ({e})") from None
    values = {}
    for stmt in tree.body:
        where = f"{path}:{stmt.lineno}"
        if _ignored_statement(stmt):
            continue
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            raise UserError(f"{where}: expected `key = value`, found `{ast.unparse(stmt)}`")
        key = stmt.targets[0].id
        if key not in ignored:
            values[key] = _eval_node(stmt.value, values, where)
    return values


# ----------------------------------------------------------------------------------------------
# typing values into dataclass fields


def _parse_override(text):
    """`--key=value` -> (key, value); the value is a Python literal if it parses as one, else a string."""
    if not text.startswith("--") or "=" not in text:
        raise UserError(f"bad argument '{text}': overrides look like --key=value")
    key, raw = text[2:].split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def _coerce(key, value, typ):
    """Check `value` against the field type `typ`, allowing the safe widenings int->float and any->str."""
    origin = typing.get_origin(typ)
    if origin is typing.Literal:
        choices = typing.get_args(typ)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"{key}={value!r} is not one of {', '.join(map(repr, choices))}{hint}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0])
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif typ is str:
        return value if isinstance(value, str) else str(value)
    else:
        return value
    raise UserError(f"{key} must be {typ.__name__}, got {value!r} ({type(value).__name__})")


def closest_key_hint(key, valid):
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def build_configs(classes, values, ignored=()):
    """Instantiate each dataclass in `classes` from one flat {key: value}, checking every key and type.

    Flat keys keep nanoGPT's habits (`--n_layer=4 --batch_size=32`) while each part of the
    program gets its own typed config. A key goes to the class that declares it.
    """
    owner = {f.name: cls for cls in classes for f in dataclasses.fields(cls)}
    kwargs = {cls: {} for cls in classes}
    for key, value in values.items():
        if key in ignored:
            continue
        if key not in owner:
            raise UserError(f"unknown setting '{key}'{closest_key_hint(key, list(owner))}")
        cls = owner[key]
        kwargs[cls][key] = _coerce(key, value, typing.get_type_hints(cls)[key])
    configs = []
    for cls in classes:
        cfg = cls(**kwargs[cls])
        if hasattr(cfg, "validate"):
            cfg.validate()
        configs.append(cfg)
    return configs


def parse_args(classes, argv, ignored=()):
    """Read `[config_file.py] [--key=value ...]` into validated instances of `classes`.

    The first argument may be a config file (anything not starting with `--`); overrides apply on
    top of it, in order. `ignored` names keys accepted for nanoGPT compatibility but not used.
    """
    if "-h" in argv or "--help" in argv:
        print(help_text(classes))
        sys.exit(0)
    values = {}
    for i, arg in enumerate(argv):
        if i == 0 and not arg.startswith("--"):
            values.update(read_config_file(arg, ignored))
        else:
            key, value = _parse_override(arg)
            values[key] = value
    return build_configs(classes, values, ignored)


def _type_name(typ):
    if typing.get_origin(typ) is typing.Literal:
        return "|".join(map(str, typing.get_args(typ)))
    return getattr(typ, "__name__", str(typ))


def help_text(classes):
    """The running script's docstring, then every setting with its type, default and comment."""
    lines = [(sys.modules["__main__"].__doc__ or "").strip(), "", "settings (config file `key = value`, or --key=value):"]
    for cls in classes:
        comments = dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.*)$", inspect.getsource(cls), re.M))
        lines.append(f"  {cls.__name__}:")
        for f in dataclasses.fields(cls):
            lines.append(f"    --{f.name}={f.default!r}  ({_type_name(f.type)}) {comments.get(f.name, '')}".rstrip())
    return "\n".join(lines)
