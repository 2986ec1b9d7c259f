"""What every exercise's checks share: loading a learner's mine/NAME.py, calling into it, comparing what
it returns with the reference, and naming the likely mistake.

A learner's code runs only through `Solution.call` (or inside `with solution.turn():`): an exception
there is theirs, and is shown with the traceback lines of their own files alone (file, line, code),
none of ours; a NotImplementedError raised by their file means that part is not written yet.

A check is a generator of Results; an exercise groups its checks by what the learner writes (one
group per function), so a function not yet written fails its own group and the others still run.
"""

import inspect
import sys
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gptkit.config import closest_key_hint
from gptkit.errors import UserError

ATOL, RTOL = 1e-5, 1e-4  # float32 agreement between two correct ways of computing the same thing


@dataclass
class Result:
    name: str  # what was checked, e.g. "weights equal the reference's (B=2, nh=3, T=5, hs=4)"
    passed: bool
    expected: str = ""
    got: str = ""
    cause: str = ""  # the likely mistake, when a failure looks like a known one


class LearnerError(Exception):
    """The learner's code raised: `text` is their traceback (their frames only) and the exception line;
    `call` the call of theirs that raised, with its inputs (e.g. "sample_next(..., temperature=0.0)")."""

    def __init__(self, text, call=""):
        super().__init__(text)
        self.text, self.call = text, call


class NotWritten(Exception):
    """The learner's file still raises NotImplementedError in `what` (e.g. 'causal_attention')."""

    def __init__(self, what):
        super().__init__(what)
        self.what = what


def inside(filename, folder):
    try:
        return Path(filename).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


def learner_traceback(exc, folder):
    """The traceback of `exc` cut to the frames in `folder` (the learner's files), then the exception line.
    A SyntaxError's own lines (file, line, the code and a caret) are in its exception line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if inside(f.filename, folder)]
    lines = []
    if frames:
        lines += ["Traceback (your code, most recent call last):\n", *traceback.format_list(frames)]
    elif not isinstance(exc, SyntaxError):
        lines.append("raised outside your files, by code using what yours returned:\n")
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip("\n")


def raised_here(exc, folder):
    """The qualified name of the function of `folder` that raised exc itself (its innermost frame), or None."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or not inside(tb.tb_frame.f_code.co_filename, folder):
        return None
    return tb.tb_frame.f_code.co_qualname


class Solution:
    """A learner's mine/NAME.py, executed as a module; its names are attributes (solution.causal_attention)."""

    def __init__(self, path):
        self.path = Path(path)
        self.folder = self.path.parent.resolve()
        try:
            source = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{self.path} is not UTF-8 text") from None
        self.made = {}  # id(object made by Solution.call) -> (the object, the call that made it)
        self.module = types.ModuleType(f"mine_{self.path.stem}")
        self.module.__file__ = str(self.path)
        sys.modules[self.module.__name__] = self.module  # dataclasses and pickle look a class's module up
        with self.turn():
            exec(compile(source, str(self.path), "exec"), self.module.__dict__)

    def __getattr__(self, name):
        try:
            return getattr(self.module, name)
        except AttributeError:
            defined = [n for n in vars(self.module) if not n.startswith("_")]
            raise LearnerError(f"{self.path} defines no {name}{closest_key_hint(name, defined)}: keep the name the "
                               f"exercise gives it") from None

    @contextmanager
    def turn(self):
        """The learner's code runs in here: what it raises becomes NotWritten or LearnerError."""
        try:
            yield
        except (LearnerError, NotWritten):
            raise
        except Exception as e:
            what = raised_here(e, self.folder) if isinstance(e, NotImplementedError) else None
            if what is not None:
                raise NotWritten(what) from None
            raise LearnerError(learner_traceback(e, self.folder)) from None

    def call(self, fn, *args, **kwargs):
        try:
            with self.turn():
                result = fn(*args, **kwargs)
        except LearnerError as e:
            e.call = e.call or self.call_text(fn, args, kwargs)
            raise
        if isinstance(fn, type):  # an object of theirs: later calls on it name how it was made
            self.made[id(result)] = (result, self.call_text(fn, args, kwargs))
        return result

    def call_text(self, fn, args, kwargs):
        """The call as a learner reads it: `LayerNorm(ndim=16, bias=False)`, `sample_next(logits=a float32
        tensor of shape (16, 30), temperature=0.0, ...)`; a call on an object of theirs names how it was made."""
        made = self.made.get(id(fn))
        name = made[1] if made and made[0] is fn else getattr(fn, "__qualname__", type(fn).__name__)
        if name == "<lambda>":
            return ""  # our own code around theirs: the traceback says where
        try:
            target = fn.forward if isinstance(fn, torch.nn.Module) else fn
            bound = inspect.signature(target).bind(*args, **kwargs).arguments.items()
        except (TypeError, ValueError):  # no signature to bind to: the inputs as passed
            bound = [*((None, a) for a in args), *kwargs.items()]
        return f"{name}({', '.join(input_text(v) if k is None else f'{k}={input_text(v)}' for k, v in bound)})"


@dataclass
class Report:
    """What running an exercise's checks on a solution found."""

    results: list = field(default_factory=list)
    not_written: list = field(default_factory=list)  # the functions still raising NotImplementedError
    error: str = ""  # the learner's traceback, when their code raised (the checks stop there)
    crashed_in: str = ""  # the call of theirs that raised, with its inputs
    groups_run: int = 0  # check groups that ran to their end, without meeting a NotImplementedError
    solution: object = None  # the Solution the checks ran on, once it loaded

    @property
    def state(self):
        if not self.groups_run and self.not_written and not self.error:
            return "not started"
        passing = not self.error and not self.not_written and all(r.passed for r in self.results)
        return "passing" if passing else "failing"

    @property
    def failed(self):
        return [r for r in self.results if not r.passed]


def run_checks(exercise, path):
    """Load the solution at `path` and run the exercise's check groups on it -> Report."""
    report = Report()
    try:
        solution = Solution(path)
    except NotWritten as e:
        report.not_written.append(e.what)
        return report
    except LearnerError as e:
        report.error = e.text
        return report
    report.solution = solution
    for group in exercise.GROUPS:
        try:
            for result in group(solution):
                report.results.append(result)
            report.groups_run += 1
        except NotWritten as e:
            if e.what not in report.not_written:
                report.not_written.append(e.what)
        except LearnerError as e:
            report.error, report.crashed_in = e.text, e.call
            break
        except Exception as e:  # our check could not read what came back: a failure, not a crash
            report.groups_run += 1
            report.results.append(Result(f"{group.__name__.replace('_', ' ')}", False,
                                         cause=f"could not check what your code returned "
                                               f"({type(e).__name__}: {str(e)[:160]})"))
    return report


@dataclass
class Training:
    """How `learn.py train` puts an exercise's piece into the model: substitute(solution) is a context
    manager under which model.py (or transformer.py) computes that piece with the learner's code. Both runs,
    the learner's and the reference's, train with `overrides` (so the repository's piece runs where the
    learner's will); `requires` {setting: allowed values} are the settings the learner's piece is written for;
    `config` is the training config both runs start from (learn.py's --config replaces it), and `defaults` settings
    on top of it that the learner's own --key=value may change."""

    label: str  # "your attention", as the results name it
    substitute: object
    overrides: dict = field(default_factory=dict)
    requires: dict = field(default_factory=dict)
    config: str = "config/lab_char_cpu.py"
    defaults: dict = field(default_factory=dict)
    # a tokenizer changes the data, not the model: datasets(solution, data_dir) prepares the text with the
    # learner's and with the reference's, and returns (the learner's dataset, the reference's) to train on
    datasets: object = None


# ----------------------------------------------------------------------------------------------
# comparing tensors


def same(got, expected, atol=ATOL, rtol=RTOL, nan_equal=False):
    """Whether got is a tensor of expected's shape holding the same values (to float32 tolerance)."""
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
        return False
    if got.is_floating_point() or expected.is_floating_point():
        return torch.allclose(got.detach().double(), expected.detach().double(), atol=atol, rtol=rtol,
                              equal_nan=nan_equal)
    return torch.equal(got, expected)


def input_text(value):
    """An input as a report names it: a tensor by dtype and shape, a number or setting as written."""
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    return f"a {type(value).__name__}"


def plural(n, noun):
    """'1 position', '2 positions'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def shape_text(t):
    return f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else f"a {type(t).__name__}, not a tensor"


def values_text(t, index):
    """t's values around `index` along its last dimension, e.g. '[0, 1, :4] = [0.2500, 0.7500, 0.0000, 0.0000]'."""
    if t.dim() == 0:
        return f"{t.item():.6g}"
    *lead, last = index
    start = max(0, min(last - 2, t.shape[-1] - 6))
    row = t[tuple(lead)][start:start + 6].detach()
    row = (row.double() if row.is_floating_point() else row).tolist()  # token ids stay whole numbers
    shown = ", ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row)
    at = ", ".join(map(str, lead + [f"{start}:{start + len(row)}"]))
    return f"[{at}] = [{shown}{', ...' if start + len(row) < t.shape[-1] else ''}]"


def difference(got, expected, atol=ATOL, rtol=RTOL):
    """(expected, got) as text, at the first place they differ."""
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
        return shape_text(expected), shape_text(got)
    if got.dtype != expected.dtype and not (got.is_floating_point() and expected.is_floating_point()):
        return f"dtype {expected.dtype}", f"dtype {got.dtype}"
    g, e = got.detach().double(), expected.detach().double()
    bad = ~torch.isclose(g, e, atol=atol, rtol=rtol)
    index = [int(i) for i in bad.nonzero()[0]] if bad.any() else [0] * got.dim()
    return values_text(expected, index), values_text(got, index)


def compare(name, got, expected, diagnose=None, atol=ATOL, rtol=RTOL):
    """A Result: got equals expected; on a failure, diagnose() names the likely cause."""
    if same(got, expected, atol, rtol):
        return Result(name, True)
    want, came = difference(got, expected, atol, rtol)
    return Result(name, False, want, came, diagnose() if diagnose else "")


def first_match(got, variants, atol=ATOL, rtol=RTOL, expected=None):
    """The cause of the first of variants [(cause, tensor or a function making it)] that got equals, or ''.
    Each variant is a likely-wrong way of computing the result: the one got matches is the mistake.
    A variant that equals `expected` too (the mistake makes no difference on these inputs) names nothing."""
    for cause, variant in variants:
        value = variant() if callable(variant) else variant
        if value is None or (expected is not None and same(value, expected, atol, rtol)):
            continue
        if same(got, value, atol, rtol, nan_equal=True):
            return cause
    return ""


def check_shape(name, got, shape, dtype=None):
    """A Result: got is a tensor of `shape` (and dtype)."""
    if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(shape) and (dtype is None or got.dtype == dtype):
        return Result(name, True)
    want = f"shape {tuple(shape)}" + (f", dtype {dtype}" if dtype is not None else "")
    came = shape_text(got) + (f", dtype {got.dtype}" if isinstance(got, torch.Tensor) else "")
    cause = ""
    if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(shape)[::-1] and len(shape) == 2:
        cause = "it is the transpose of what is asked"
    return Result(name, False, want, came, cause)


def as_tuple(value, names):
    """value checked to be a tuple of len(names) tensors; a Result saying what came instead, or None."""
    if isinstance(value, (tuple, list)) and len(value) == len(names) and all(isinstance(v, torch.Tensor) for v in value):
        return None
    came = (f"a {type(value).__name__} of {len(value)}" if isinstance(value, (tuple, list))
            else f"a {type(value).__name__}")
    return Result(f"returns ({', '.join(names)})", False, f"a tuple of {len(names)} tensors ({', '.join(names)})", came)


def ratio(got, expected):
    """got / expected when got is that multiple of expected throughout, else None (e.g. a sum for a mean)."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return None
    g, e = got.detach().double().flatten(), expected.detach().double().flatten()
    if not torch.isfinite(g).all() or e.abs().max() == 0:
        return None
    r = (g @ e / (e @ e)).item()
    return r if torch.allclose(g, r * e, atol=ATOL, rtol=1e-3) else None


def unchanged_before(cut, y, y2, dim, cause):
    """A Result: y2, from inputs changed at positions `cut` on (along dim), equals y at the positions before."""
    moved = (y2 - y).narrow(dim, 0, cut).abs().amax(dim=[d for d in range(y.dim()) if d != dim])  # (cut,)
    changed = [t for t in range(cut) if moved[t] > 1e-6]
    before = "position 0" if cut == 1 else f"positions 0-{cut - 1}"
    return Result(f"changing the tokens from position {cut} on leaves the outputs at {before} as they were",
                  not changed, "the same outputs", f"position {changed[0]} changed by {moved[changed[0]]:.4f}"
                  if changed else "", cause if changed else "")


def holding_weights(module, ref, names):
    """(the learner's module holding ref's weights, in eval mode, None), or (None, a failed Result) when its
    parameters are not ref's, those the template's __init__ builds (`names`, e.g. "c_attn and c_proj")."""
    got, expected = sorted(dict(module.named_parameters())), sorted(dict(ref.named_parameters()))
    if got != expected:
        return None, Result(f"the parameters are {names}, as the template builds them", False, ", ".join(expected),
                            ", ".join(got), "keep the template's __init__")
    module.load_state_dict(ref.state_dict(), strict=False)  # strict=False: ref's buffers, if any, are not learned
    return module.eval(), None


def random(*shape, seed=0, scale=1.0):
    """Standard normal values (times scale) from their own generator: the same for the same seed."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def logits_targets(N, V, seed=0, scale=1.0):
    """(N, V) random logits and (N,) target ids in [0, V), the same for the same seed."""
    return random(N, V, seed=seed, scale=scale), torch.randint(V, (N,), generator=torch.Generator().manual_seed(seed))
