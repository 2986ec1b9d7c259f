"""backward: the gradients of softmax + cross-entropy and of a Linear layer, written by hand, checked
against autograd (as Karpathy's makemore part 4 checks each one with cmp())."""

import torch
import torch.nn.functional as F

from gptkit.exercises.harness import Result, as_tuple, check_shape, compare, first_match, logits_targets, random, ratio

TITLE = "backprop by hand: cross-entropy and a Linear layer"
WRITES = "cross_entropy_backward, linear_backward"
LOSS_CASES = [(8, 65), (1, 5), (32, 10)]  # (N, V)
LINEAR_CASES = [(5, 7, 7), (6, 4, 3), (1, 3, 2)]  # (N, in, out); in == out first: a transpose keeps the shape


def autograd_dlogits(logits, targets):
    logits = logits.clone().requires_grad_()
    F.cross_entropy(logits, targets).backward()
    return logits.grad


def autograd_linear(x, weight, bias, dout):
    x, weight, bias = (t.clone().requires_grad_() for t in (x, weight, bias))
    F.linear(x, weight, bias).backward(dout)  # y = x @ weight.T + bias
    return x.grad, weight.grad, bias.grad


def dlogits_causes(got, logits, targets):
    N = len(targets)
    probs = F.softmax(logits.double(), dim=-1)
    onehot = F.one_hot(targets, logits.shape[-1]).double()
    r = ratio(got, (probs - onehot) / N)
    if r is not None and N > 1 and abs(r - N) < 1e-3 * N:
        return f"your gradient is N = {N} times autograd's: the loss is a mean over N rows, so divide by N"
    return first_match(got, [
        ("the sign is flipped: dlogits = (softmax - onehot) / N", (onehot - probs) / N),
        ("you forgot the -1 at the target: dlogits = (softmax(logits) - onehot(targets)) / N", probs / N),
        ("the softmax is over the vocabulary, the last dimension (dim=-1)",
         (F.softmax(logits.double(), dim=0) - onehot) / N if N > 1 else None),
    ], atol=1e-6, rtol=1e-4)


def linear_causes(name, got, x, weight, dout):
    """The gradients of y = x @ weight.T + bias as learners get them wrong."""
    x, weight, dout = x.double(), weight.double(), dout.double()
    if name == "dx":
        return first_match(got, [
            ("dx is off by a transpose: dx = dout @ weight, (N, out) @ (out, in)", dout @ weight.T
             if weight.shape[0] == weight.shape[1] else None),
        ]) or ("dx = dout @ weight: shape (N, in), like x" if got.shape != x.shape else "")
    if name == "dweight":
        if got.shape == weight.shape[::-1] and got.shape != weight.shape:
            return f"your dweight is {tuple(got.shape)}, the transpose of the weight's {tuple(weight.shape)}: " \
                   f"dweight = dout.T @ x, (out, N) @ (N, in)"
        return first_match(got, [
            ("your dweight is the transpose of autograd's: dweight = dout.T @ x, (out, N) @ (N, in)",
             x.T @ dout),
        ])
    N = len(dout)
    return first_match(got, [
        (f"dbias is the mean over the batch, 1/N = 1/{N} of autograd's: it is the sum, dout.sum(0)",
         dout.mean(0) if N > 1 else None),
        ("dbias sums over the wrong dimension: each output's bias gets the sum over the N rows, dout.sum(0)",
         dout.sum(1)),
    ])


def cross_entropy_backward_matches_autograd(mine):
    for i, (N, V) in enumerate(LOSS_CASES):
        logits, targets = logits_targets(N, V, seed=i)
        got = mine.call(mine.cross_entropy_backward, logits.clone(), targets.clone())
        yield check_shape(f"dlogits is (N, V) = ({N}, {V})", got, (N, V))
        yield compare(f"dlogits equals autograd's d cross_entropy / d logits (N={N}, V={V})", got,
                      autograd_dlogits(logits, targets), lambda: dlogits_causes(got, logits, targets), atol=1e-6)


def linear_backward_matches_autograd(mine):
    for i, (N, n_in, n_out) in enumerate(LINEAR_CASES):
        x, weight, bias, dout = (random(*shape, seed=10 * i + j)
                                 for j, shape in enumerate([(N, n_in), (n_out, n_in), (n_out,), (N, n_out)]))
        out = mine.call(mine.linear_backward, x.clone(), weight.clone(), dout.clone())
        wrong = as_tuple(out, ("dx", "dweight", "dbias"))
        if wrong:
            yield wrong
            return
        where = f"N={N}, in={n_in}, out={n_out}"
        for name, got, expected in zip(("dx", "dweight", "dbias"), out, autograd_linear(x, weight, bias, dout)):
            yield compare(f"{name} equals autograd's ({where})", got, expected,
                          lambda: linear_causes(name, got, x, weight, dout))


def the_chain_matches_autograd(mine):
    """loss = cross_entropy(x @ W.T + b): the learner's two backward passes, chained, against autograd."""
    N, n_in, V = 6, 5, 4
    x, weight, bias = random(N, n_in, seed=40), random(V, n_in, seed=41), random(V, seed=42)
    targets = torch.randint(V, (N,), generator=torch.Generator().manual_seed(43))
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    F.cross_entropy(F.linear(*leaves), targets).backward()
    dlogits = mine.call(mine.cross_entropy_backward, F.linear(x, weight, bias), targets)
    out = mine.call(mine.linear_backward, x, weight, dlogits)
    if as_tuple(out, ("dx", "dweight", "dbias")):
        yield Result("the chain: linear_backward returns (dx, dweight, dbias)", False)
        return
    for name, got, leaf in zip(("dx", "dweight", "dbias"), out, leaves):
        yield compare(f"chained, loss = cross_entropy(x @ W.T + b): {name} equals autograd's", got, leaf.grad,
                      atol=1e-6)


GROUPS = [cross_entropy_backward_matches_autograd, linear_backward_matches_autograd, the_chain_matches_autograd]
TRAIN = None
