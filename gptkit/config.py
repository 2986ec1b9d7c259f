"""Settings: typed dataclasses, filled from plain `key = value` config files and `--key=value` arguments.

Every script reads its command line the same way:

    python3 SCRIPT.py [COMMAND] [CONFIG.py] [POSITIONAL ...] [--key=value ...]

A config file is read as data, never executed: each line must be `name = expression`, where the
expression uses only literals, arithmetic and names assigned earlier in the same file (so nanoGPT's
`gradient_accumulation_steps = 5 * 8` works). Anything else (calls, attribute access, loops) is an
error, and so is an import (nanoGPT's own `import time`, whose only use is code we skip anyway,
excepted). This is why a config file from a stranger is safe to run. `--key=value` arguments apply on
top, in order; a list setting collects every value it is given. `--help` prints the script's
docstring and every setting with its type, default and comment.

Every key belongs to a field of a dataclass; an unknown key or a wrong type is a one-line
`UserError` that suggests the closest valid key or the expected type. The settings themselves live
beside what they set: `GPTConfig` in model.py, `TrainConfig` at the top of train.py, each other
script's at its top.
"""

import ast
import dataclasses
import difflib
import inspect
import operator
import re
import sys
import types
import typing
from pathlib import Path

from gptkit.errors import UserError

# ----------------------------------------------------------------------------------------------
# reading a config file as data

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARYOPS = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
# keys nanoGPT's own config files compute with code: a config file cannot, so the default stays
COMPUTED_IN_NANOGPT = ("wandb_run_name",)


# the one import nanoGPT's own config files contain (finetune_shakespeare.py, for its W&B run name)
NANOGPT_IMPORTS = {"time"}


def _ignored_statement(stmt):
    """Statements nanoGPT's own config files contain that carry no setting: `import time` and a docstring.
    Any other import is code, as is a bare expression that is not a constant (a call such as `print(...)`)."""
    if isinstance(stmt, ast.Import):
        return all(alias.name in NANOGPT_IMPORTS and alias.asname is None for alias in stmt.names)
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)


# Bounds on what a config file may compute: no setting needs a number larger than a float holds, and a
# few lines that each square the last value (`x = x * x`) would otherwise take hours and all memory.
MAX_INT_BITS = 1024
MAX_ITEMS = 1 << 20  # characters of a string, items of a list


def _too_large(value):
    if isinstance(value, int):
        return value.bit_length() > MAX_INT_BITS
    return isinstance(value, (str, bytes, list)) and len(value) > MAX_ITEMS


def _source(node):
    """A node's source for an error message: one line, at most 80 characters."""
    text = ast.unparse(node).splitlines()[0]
    return text if len(text) <= 80 else text[:77] + "..."


def _eval_node(node, names, where):
    if isinstance(node, ast.Constant):
        value = node.value
    elif isinstance(node, ast.Name):
        if node.id not in names:
            raise UserError(f"{where}: name '{node.id}' is not defined earlier in the file")
        return names[node.id]
    elif isinstance(node, (ast.List, ast.Tuple)):
        return [_eval_node(e, names, where) for e in node.elts]
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval_node(node.left, names, where), _eval_node(node.right, names, where)
        if isinstance(node.op, ast.Pow) and isinstance(right, int) and abs(right) > 1024:
            raise UserError(f"{where}: cannot compute `{_source(node)}` (exponent too large)")
        sequence, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(node.op, ast.Mult) and isinstance(sequence, (str, bytes, list)) and isinstance(count, int) \
                and len(sequence) * count > MAX_ITEMS:  # refused before it is built
            raise _too_large_error(node, where)
        value = _compute(_BINOPS[type(node.op)], node, where, left, right)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARYOPS:
        value = _compute(_UNARYOPS[type(node.op)], node, where, _eval_node(node.operand, names, where))
    else:
        raise UserError(f"{where}: only literals and arithmetic are allowed in a config file (found `{_source(node)}`)")
    if _too_large(value):
        raise _too_large_error(node, where)
    return value


def _too_large_error(node, where):
    return UserError(f"{where}: `{_source(node)}` is too large for a setting (numbers below 2**{MAX_INT_BITS}, "
                     f"strings and lists up to {MAX_ITEMS:,} items)")


def _compute(op, node, where, *operands):
    try:
        return op(*operands)
    except (ArithmeticError, TypeError, ValueError) as e:  # 1 / 0, 'a' - 1, 10.0 ** 400
        raise UserError(f"{where}: cannot compute `{_source(node)}` ({e})") from None


class TrailingComma(list):
    """A value that a trailing comma made a list (`learning_rate = 1e-3,` is Python's one-item tuple): a list
    setting takes its items, any other setting names the comma as the mistake. written: where and how."""

    def __init__(self, items, written):
        super().__init__(items)
        self.written = written


def _ends_with_comma(text, node):
    """Whether the tuple `node` was written without parentheses and with a trailing comma: `1e-3,`."""
    source = (ast.get_source_segment(text, node) or "").strip()
    return isinstance(node, ast.Tuple) and not source.startswith("(") and source.endswith(",")


def config_file_hint(path):
    """` (did you mean config/shakespeare_char.py?)` for a config file name that is close to one that exists."""
    folder = path.parent if path.parent.is_dir() else Path("config")  # a misspelt folder: the repository's
    names = sorted(p.name for p in folder.glob("*.py")) if folder.is_dir() else []
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.8)
    return f" (did you mean {folder / close[0]}?)" if close else ""


def read_config_file(path):
    """Return {key: value} from a `key = value` config file, without executing it.

    nanoGPT's finetune config sets `wandb_run_name = 'ft-' + str(time.time())`, which is code: for the
    keys in COMPUTED_IN_NANOGPT such a value is skipped with a warning, and the default stays.
    """
    path = Path(path)
    if not path.is_file():
        hint = f" (settings look like --key=value: --{path.name})" if "=" in path.name else ""
        raise UserError(f"config file '{path}' not found{hint or config_file_hint(path)}; see config/ for the "
                        f"available ones")
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError) as e:  # ValueError: a NUL byte in the file
        raise UserError(f"{path}: not a valid `key = value` config file ({e})") from None
    except (RecursionError, MemoryError):  # Python's own parser gives up on an expression nested thousands deep
        raise UserError(f"{path}: not a valid `key = value` config file (an expression is nested too deeply)") from None
    values = {}
    for stmt in tree.body:
        where = f"{path}:{stmt.lineno}"
        if _ignored_statement(stmt):
            continue
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            raise UserError(f"{where}: a config file holds settings, not code: `{_source(stmt)}` is refused "
                            f"(only nanoGPT's `import time` is skipped); remove the line")
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            raise UserError(f"{where}: expected `key = value`, found `{_source(stmt)}`")
        key = stmt.targets[0].id
        try:
            values[key] = _eval_node(stmt.value, values, where)
            if _ends_with_comma(text, stmt.value):
                values[key] = TrailingComma(values[key], f"{where}: `{ast.get_source_segment(text, stmt)}`")
        except RecursionError:  # `1 + 1 + ... + 1`, thousands of terms: a tree deeper than Python's stack
            raise UserError(f"{where}: the expression is nested too deeply") from None
        except UserError as e:
            if key not in COMPUTED_IN_NANOGPT:
                raise
            print(f"warning: {e}; {key} keeps its default", file=sys.stderr)
    return values


# ----------------------------------------------------------------------------------------------
# the command line


def parse_override(text):
    """`--key=value` -> (key, value); the value is a Python literal if it parses as one, else a string."""
    if not text.startswith("--") or "=" not in text:
        hint = f" (--{text.lstrip('-')}=VALUE, one word)" if text.startswith("--") else ""
        raise UserError(f"bad argument '{text}': settings look like --key=value{hint}")
    key, raw = text[2:].split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = raw
    if isinstance(value, tuple) and raw.rstrip().endswith(",") and not raw.lstrip().startswith("("):
        value = TrailingComma(value, f"`{text}`")
    return key, value


def read_args(argv, config_file=False):
    """argv -> ([(key, value), ...], [positional, ...]), the config file's settings first.

    With config_file, the first positional argument is a `key = value` file (train.py CONFIG.py).
    """
    pairs, positional = [], []
    for arg in argv:
        if arg.startswith("-"):
            pairs.append(parse_override(arg))
        else:
            positional.append(arg)
    if config_file and positional:
        pairs = [*read_config_file(positional.pop(0)).items(), *pairs]
    return pairs, positional


def _coerce(key, value, typ):
    """Check `value` against the field type `typ`, allowing the safe widenings int->float and any->str."""
    origin = typing.get_origin(typ)
    if isinstance(value, TrailingComma) and origin is not list:
        raise UserError(f"{value.written} ends with a comma, which makes {key} a list ({list(value)!r}); remove "
                        f"the trailing comma")
    if origin is typing.Literal:
        choices = typing.get_args(typ)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            raise UserError(f"{key}={value!r} is not one of {', '.join(map(repr, choices))}"
                            f"{closest_key_hint(str(value), [str(c) for c in choices])}")
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
    if origin is list:
        (item,) = typing.get_args(typ)
        return [_coerce(key, v, item) for v in (value if isinstance(value, list) else [value])]
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an int too large for a float: 10**400
                pass
    elif typ is str:
        return value if isinstance(value, str) else str(value)
    else:
        return value
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise UserError(f"{key} must be {typ.__name__}, got {shown} ({type(value).__name__})")


def is_count(value):
    """A whole number >= 0, as a count or an index read from a file must be (a bool is an int, not a count)."""
    return type(value) is int and value >= 0  # noqa: E721


def closest_key_hint(key, valid):
    """` (did you mean 'n_layer'?)` for a near miss, or for a prefix of a valid key (`attn`: 'attn_score')."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    close = close or sorted(v for v in valid if key and v.startswith(key))
    return f" (did you mean '{close[0]}'?)" if close else ""


def field_types(classes):
    """{key: (class, type)} for every field of `classes`."""
    return {f.name: (cls, typing.get_type_hints(cls)[f.name]) for cls in classes for f in dataclasses.fields(cls)}


def build_configs(classes, values):
    """Instantiate each dataclass in `classes` from one flat list of (key, value) (or a dict), checking
    every key and type, then run each one's validate().

    Flat keys keep nanoGPT's habits (`--n_layer=4 --batch_size=32`) while each part of the program
    gets its own typed config. A key goes to the class that declares it. A later value replaces an
    earlier one, except for list settings, which collect them all.
    """
    owner = field_types(classes)
    kwargs = {cls: {} for cls in classes}
    for key, value in (values.items() if isinstance(values, dict) else values):
        if key not in owner:
            raise UserError(f"unknown setting '{key}'{closest_key_hint(key, list(owner))}")
        cls, typ = owner[key]
        value = _coerce(key, value, typ)
        kwargs[cls][key] = kwargs[cls].get(key, []) + value if typing.get_origin(typ) is list else value
    configs = []
    for cls in classes:
        cfg = cls(**kwargs[cls])
        if hasattr(cfg, "validate"):
            try:
                cfg.validate()
            except ValueError as e:  # model.py raises ValueError (it imports nothing of ours)
                raise UserError(str(e)) from None
        configs.append(cfg)
    return configs


def read_command_line(classes, argv, config_file=False, positional=None):
    """`[CONFIG.py] [POSITIONAL ...] [--key=value ...]` -> [(key, value), ...], the config file's first:
    every setting the user gave, in order (--help prints the settings of `classes` and exits).

    config_file: the first positional argument is a config file read before the overrides.
    positional: the setting that takes the (other) positional arguments: all of them when it is a
    list, else exactly one.
    """
    if "-h" in argv or "--help" in argv:
        print(help_text(classes))
        sys.exit(0)
    pairs, rest = read_args(argv, config_file)
    if rest:
        if positional is None:
            hint = (f"; did you mean --out_dir={rest[0]}?" if "out_dir" in field_types(classes) and Path(rest[0]).is_dir()
                    else "")
            raise UserError(f"unexpected argument '{rest[0]}': settings look like --key=value{hint}")
        if typing.get_origin(field_types(classes)[positional][1]) is not list and len(rest) > 1:
            raise UserError(f"expected one {positional}, got {len(rest)}: {' '.join(rest)}")
        pairs += [(positional, value) for value in rest]
    return pairs


def parse_args(classes, argv, config_file=False, positional=None):
    """The command line (as read_command_line) as validated instances of `classes`."""
    return build_configs(classes, read_command_line(classes, argv, config_file, positional))


def command_args(argv, commands):
    """`SCRIPT.py COMMAND ...` -> (COMMAND, its arguments). commands: {name: [dataclasses]}, for --help."""
    if argv and argv[0] in commands:
        return argv[0], argv[1:]
    if argv and argv[0] in ("-h", "--help"):
        print(help_text([cls for classes in commands.values() for cls in classes]))
        sys.exit(0)
    given = f"unknown command '{argv[0]}'{closest_key_hint(argv[0], list(commands))}; " if argv else ""
    raise UserError(f"{given}name one of: {', '.join(commands)} (see --help)")


def _type_name(typ):
    if typing.get_origin(typ) is typing.Literal:
        return "|".join(map(str, typing.get_args(typ)))
    if typing.get_origin(typ) is list:
        return "repeatable"
    return getattr(typ, "__name__", str(typ))


def field_comments(source):
    """{field: its comment} in a dataclass's source: the comment on the field's line, or else the comment
    lines right above it (where a long explanation of the choices of a Literal goes)."""
    comments, above = {}, []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        field = re.match(r"^\s+(\w+):[^#=]*(=[^#]*)?(#\s*(.*))?$", line)
        if field and not stripped.startswith(("def ", "@", "return")):
            comments[field.group(1)] = field.group(4) or " ".join(above)
        above = []
    return comments


def help_text(classes):
    """The running script's docstring, then every setting with its type, default and comment."""
    doc = (sys.modules["__main__"].__doc__ or "").strip()
    lines = [doc, "", "settings (config file `key = value`, or --key=value):"]
    for cls in dict.fromkeys(classes):
        comments = {}
        for source in reversed([inspect.getsource(c) for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
            comments.update(field_comments(source))
        lines.append(f"  {cls.__name__}:")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"    --{f.name}={default!r}  ({_type_name(f.type)}) {comments.get(f.name, '')}".rstrip())
    return "\n".join(lines)
