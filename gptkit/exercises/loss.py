"""loss: cross_entropy(logits, targets) -> scalar, checked against F.cross_entropy (what GPT.forward
uses), its gradient against F.cross_entropy's; `learn.py train loss` trains with it in GPT.forward."""

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

import model
from gptkit.exercises.harness import Result, Training, check_shape, compare, first_match, logits_targets, ratio

TITLE = "the cross-entropy loss, stable for large logits"
WRITES = "cross_entropy"
CASES = [(8, 65), (1, 2), (32, 1000), (5, 3)]  # (N positions, V vocabulary)


def causes(got, logits, targets):
    """Compute the losses learners write by mistake; the one `got` matches names the mistake."""
    if not isinstance(got, torch.Tensor):
        return ""
    N = len(targets)
    ref = F.cross_entropy(logits.double(), targets)
    log_p = F.log_softmax(logits.double(), dim=-1)  # (N, V)
    r = ratio(got.reshape(()) if got.numel() == 1 else got, ref)
    if r is not None and N > 1 and abs(r - N) < 1e-3 * N:
        return f"your loss is N = {N} times the reference's: take the mean over the positions, not the sum"
    if r is not None and abs(r - 1 / math.log(2)) < 1e-3:
        return f"your loss is {r:.3f} = 1/ln 2 times the reference's: use the natural log, not log2"
    if r is not None and abs(r - 1 / math.log(10)) < 1e-3:
        return f"your loss is {r:.3f} = 1/ln 10 times the reference's: use the natural log, not log10"
    picked = log_p[torch.arange(N), targets]  # (N,)
    return first_match(got, [
        ("your loss is negative: it is minus the log-likelihood, -log p(target)", -ref),
        (f"your loss has shape ({N},), one per position: return their mean, a scalar", -picked),
        ("you take -p(target), not -log p(target)", -log_p.exp()[torch.arange(N), targets].mean()),
        ("you picked logits[:, targets], every row at every target; take one per row: "
         "logits[torch.arange(N), targets]", -log_p[:, targets].mean()),
        ("you normalise over the positions (dim 0); the softmax is over the vocabulary, the last dimension",
         -F.log_softmax(logits.double(), dim=0)[torch.arange(N), targets].mean()),
    ], atol=1e-4, rtol=1e-4)


def matches_f_cross_entropy(mine):
    for N, V in CASES:
        logits, targets = logits_targets(N, V)
        loss = mine.call(mine.cross_entropy, logits.clone(), targets.clone())
        yield check_shape(f"a scalar, shape () (N={N}, V={V})", loss, ())
        ref = F.cross_entropy(logits, targets)
        yield compare(f"equals F.cross_entropy (N={N}, V={V})", loss, ref, lambda: causes(loss, logits, targets))


def properties(mine):
    V = 65
    logits = torch.zeros(4, V)
    loss = mine.call(mine.cross_entropy, logits, torch.tensor([0, 7, 30, 64]))
    yield compare(f"equal logits: every token has p = 1/{V}, so the loss is log({V}) = {math.log(V):.4f}", loss,
                  torch.tensor(math.log(V)), lambda: causes(loss, logits, torch.tensor([0, 7, 30, 64])))

    # logits of a few hundred are what a confident model produces: exp overflows float32 past 88
    for what, shift, scale in (("logits near +1000", 1000.0, 1.0), ("logits spread over +-1000", 0.0, 500.0)):
        logits, targets = logits_targets(6, 20, seed=3, scale=scale)
        logits = logits + shift
        loss = mine.call(mine.cross_entropy, logits.clone(), targets)
        ref = F.cross_entropy(logits, targets)
        finite = isinstance(loss, torch.Tensor) and bool(torch.isfinite(loss).all())
        yield compare(f"{what}: the loss stays finite and equals F.cross_entropy's", loss, ref,
                      lambda: causes(loss, logits, targets) or ("" if finite else
                              "exp overflows (or a probability underflows to 0 and its log is -inf): subtract each "
                              "row's max before exp, log p = x - max - log(sum(exp(x - max))) (the log-sum-exp "
                              "trick, what F.log_softmax does inside)"), rtol=1e-4)

    # training backpropagates through the loss: its gradient must be F.cross_entropy's
    logits, targets = logits_targets(8, 65, seed=5)
    mine_logits, ref_logits = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = mine.call(mine.cross_entropy, mine_logits, targets)
    if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
        yield Result("the loss is differentiable (training calls loss.backward())", False,
                     "a tensor that requires grad", "no gradient: it was computed outside torch (.item(), numpy, "
                     "math) or detached", "compute it with torch operations on the logits tensor")
        return
    mine.call(loss.sum().backward)
    F.cross_entropy(ref_logits, targets).backward()
    yield compare("its gradient d loss / d logits equals F.cross_entropy's", mine_logits.grad, ref_logits.grad)


@contextmanager
def substitute(mine):
    """The model's loss (model.py's part `loss`) computed by the learner's cross_entropy. Training has no ignored
    targets (-1) and the lab trains without label smoothing, so the learner's plain loss is the whole of it."""

    def loss(logits, targets, label_smoothing=0.0):  # as model.next_token_loss hands them to F.cross_entropy
        return mine.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))

    with model.using_parts(loss=loss):
        yield


GROUPS = [matches_f_cross_entropy, properties]
TRAIN = Training("your loss", substitute, requires={"label_smoothing": (0.0,)})
