"""positions: sinusoidal_encoding(num_positions, d_model), checked against model.sinusoidal_encoding;
`learn.py train positions` trains with it in place of model.py's (pos_encoding=sinusoidal)."""

from contextlib import contextmanager

import torch

import model
from gptkit.exercises.harness import Result, Training, check_shape, compare, first_match, plural

TITLE = "the sinusoidal positional encoding"
WRITES = "sinusoidal_encoding"
CASES = [(10, 16), (64, 128), (7, 6), (1, 2), (50, 32)]  # (num_positions, d_model)


def encoding(pos, d, even, odd, exponent):
    """A (pos, d) table from angles pos / 10000^(exponent), even columns even(angle), odd columns odd(angle)."""
    angles = pos.double()[:, None] / 10000.0 ** exponent[None, :]  # (T, d/2)
    pe = torch.empty(len(pos), d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = even(angles), odd(angles)
    return pe


def causes(got, n, d):
    """Compute the encodings learners write by mistake; the one `got` matches names the mistake."""
    pos, two_i = torch.arange(n), torch.arange(0, d, 2).double()
    right = two_i / d

    def halves():
        angles = pos.double()[:, None] / 10000.0 ** right[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    def per_column():  # column j uses 10000^(j/d), its own index, for sin and cos columns alike
        angles = pos.double()[:, None] / 10000.0 ** (torch.arange(d).double() / d)[None, :]
        pe = angles.clone()
        pe[:, 0::2], pe[:, 1::2] = angles[:, 0::2].sin(), angles[:, 1::2].cos()
        return pe

    times = encoding(pos, d, torch.sin, torch.cos, -right)  # pos * 10000^(2i/d): angles too large to compare
    low = min(d, 4)  # in float32 but in the first columns
    if isinstance(got, torch.Tensor) and got.shape == (n, d) and d > 2 and torch.allclose(
            got[:, :low].double(), times[:, :low], atol=1e-4):
        return "you multiply pos by 10000^(2i/d_model); divide by it (low frequencies for the last columns)"
    return first_match(got, [
        ("sin and cos are swapped: even columns 2i take sin, odd columns 2i+1 take cos",
         encoding(pos, d, torch.cos, torch.sin, right)),
        ("the exponent reads 2i as i: the pair of columns (2i, 2i+1) uses 10000^(2i/d_model); "
         "torch.arange(0, d_model, 2) already counts 2i", encoding(pos, d, torch.sin, torch.cos, two_i / 2 / d)),
        ("2i is doubled: torch.arange(0, d_model, 2) already is 2i, do not multiply it by 2 again",
         encoding(pos, d, torch.sin, torch.cos, 2 * right)),
        ("each column j uses 10000^(j/d_model); the two columns of a pair share one frequency, "
         "10000^(2i/d_model) for columns 2i and 2i+1", per_column),
        ("sin fills the first half and cos the second: interleave them, sin in pe[:, 0::2], cos in pe[:, 1::2]",
         halves),
        ("your positions start at 1: the first row is position 0 (sin 0 = 0, cos 0 = 1)",
         encoding(pos + 1, d, torch.sin, torch.cos, right)),
        ("every pair of columns has the same frequency, 10000^0 = 1 (row 1 repeats sin 1 = 0.8415, cos 1 = 0.5403): "
         "two_i // d_model is integer division, 0 for every 2i < d_model; divide with /: "
         "10000 ** (two_i / d_model)", encoding(pos, d, torch.sin, torch.cos, torch.zeros_like(right))),
    ], atol=1e-4, rtol=1e-3, expected=encoding(pos, d, torch.sin, torch.cos, right))


def encoding_matches_model(mine):
    for n, d in CASES:
        pe = mine.call(mine.sinusoidal_encoding, n, d)
        yield check_shape(f"shape (num_positions, d_model) = ({n}, {d}), float32", pe, (n, d), torch.float32)
        ref = model.sinusoidal_encoding(torch.arange(n), d)
        yield compare(f"equals model.sinusoidal_encoding ({plural(n, 'position')}, d_model={d})", pe, ref,
                      lambda: causes(pe, n, d), atol=1e-4, rtol=1e-4)


def encoding_properties(mine):
    n, d = 40, 16
    pe = mine.call(mine.sinusoidal_encoding, n, d)
    if check_shape("", pe, (n, d)).passed:
        first = torch.tensor([0.0, 1.0] * (d // 2))
        yield compare("position 0 is [sin 0, cos 0, ...] = [0, 1, 0, 1, ...]", pe[0], first,
                      lambda: causes(pe, n, d), atol=1e-6)
        inside = bool((pe.abs() <= 1 + 1e-6).all())
        yield Result("every value is in [-1, 1] (a sine or a cosine)", inside, "|values| <= 1",
                     f"the largest is {pe.abs().max().item():.4g}" if not inside else "")
        # PE(p) . PE(p + k) = sum_i cos(w_i k): it depends on the distance k alone, which is how the
        # model can attend by relative position with a dot product (Vaswani et al. 2017, 3.5)
        dots = torch.stack([(pe[p] * pe[p + 3]).sum() for p in range(n - 3)])
        steady = bool(torch.allclose(dots, dots[0].expand_as(dots), atol=1e-4))
        yield Result("PE(p) . PE(p + 3) is the same for every p (it depends on the distance only)", steady,
                     f"{dots[0].item():.4f} for every p", f"from {dots.min().item():.4f} to {dots.max().item():.4f}")
    else:
        yield check_shape(f"shape ({n}, {d})", pe, (n, d))


@contextmanager
def substitute(mine):
    """The model's sinusoidal encoding (model.py's part `sinusoidal`, called as model.sinusoidal_encoding(positions,
    dim)) answered by the learner's function."""

    def learners(positions, dim):
        table = mine.sinusoidal_encoding(int(positions.max()) + 1, dim)  # (num_positions, dim)
        return table.to(positions.device)[positions]  # (T, dim)

    with model.using_parts(sinusoidal=learners):
        yield


GROUPS = [encoding_matches_model, encoding_properties]
TRAIN = Training("your positional encoding", substitute, overrides={"pos_encoding": "sinusoidal"})
