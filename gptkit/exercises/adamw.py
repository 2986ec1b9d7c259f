"""adamw: adamw_step(param, grad, exp_avg, exp_avg_sq, step, ...) -> the new (param, exp_avg, exp_avg_sq),
checked step after step against torch.optim.AdamW, the optimizer train.py uses."""

import torch

from gptkit.exercises.harness import as_tuple, compare, first_match, random

TITLE = "one AdamW step by hand, against torch's"
WRITES = "adamw_step"
# (shape, settings, steps); the last has a large eps and weight decay, where their placement shows
CASES = [((5,), dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2), 1),
         ((3, 4), dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1), 6),
         ((7,), dict(lr=0.1, beta1=0.8, beta2=0.9, eps=0.1, weight_decay=0.5), 4)]


def torch_adamw(param, grads, lr, beta1, beta2, eps, weight_decay):
    """[(param, exp_avg, exp_avg_sq)] after each step of torch.optim.AdamW on the given gradients."""
    p = param.clone().requires_grad_()
    optimizer = torch.optim.AdamW([p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    states = []
    for grad in grads:
        p.grad = grad.clone()
        optimizer.step()
        state = optimizer.state[p]
        states.append((p.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone()))
    return states


def variant(param, grads, lr, beta1, beta2, eps, weight_decay, mistake=None):
    """AdamW written out (Loshchilov & Hutter 2019, Algorithm 2), or with one mistake learners make."""
    p, m, v = param.double(), torch.zeros_like(param).double(), torch.zeros_like(param).double()
    for t, g in enumerate(grads, start=1):
        g = g.double()
        if mistake == "l2":
            g = g + weight_decay * p  # Adam with L2: the decay goes through the moments
        swapped = mistake == "swapped_betas"
        m = beta1 * g + (1 - beta1) * m if swapped else beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * (g if mistake == "v_of_g" else g * g)
        shift = {"t_plus_1": 1, "t_from_0": -1}.get(mistake, 0)
        m_hat = m if mistake == "no_bias_correction" else m / (1 - beta1 ** (t + shift))
        v_hat = v if mistake == "no_bias_correction" else v / (1 - beta2 ** (t + shift))
        if mistake == "eps_inside":
            update = m_hat / (v_hat + eps).sqrt()
        elif mistake == "no_sqrt":
            update = m_hat / (v_hat + eps)
        else:
            update = m_hat / (v_hat.sqrt() + eps)
        if mistake in ("l2", "no_decay"):
            p = p - lr * update
        elif mistake == "decay_without_lr":
            p = p * (1 - weight_decay) - lr * update
        elif mistake == "decay_after":
            p = (p - lr * update) * (1 - lr * weight_decay)
        else:
            p = p * (1 - lr * weight_decay) - lr * update
    return p


MISTAKES = [
    ("no_bias_correction", "no bias correction: divide m by (1 - beta1**t) and v by (1 - beta2**t); without it "
                           "the first steps are far too small"),
    ("l2", "the weight decay was added to the gradient (Adam with L2); AdamW decays the weight directly, "
           "param -= lr * weight_decay * param, apart from the moments (Loshchilov & Hutter 2019)"),
    ("decay_without_lr", "the weight decay is not multiplied by lr: param *= 1 - lr * weight_decay"),
    ("no_decay", "there is no weight decay: param *= 1 - lr * weight_decay before the update"),
    ("decay_after", "the decay is applied to the updated weight; AdamW decays the weight before this step's "
                    "update: param * (1 - lr * weight_decay) - lr * m_hat / (sqrt(v_hat) + eps)"),
    ("eps_inside", "eps is inside the square root; AdamW adds it after: sqrt(v_hat) + eps"),
    ("no_sqrt", "divide by the square root of v_hat: m_hat / (sqrt(v_hat) + eps)"),
    ("swapped_betas", "beta1 weighs the old average: m = beta1 * m + (1 - beta1) * grad (and so beta2 for v)"),
    ("v_of_g", "v averages the squared gradient, grad * grad"),
    ("t_plus_1", "the bias correction uses t + 1: step is already the update's number, 1 for the first"),
    ("t_from_0", "inf or NaN: the bias correction 1 - beta**t is 0 at t = 0; step counts from 1"),
]


def causes(got, param, grads, settings):
    cause = first_match(got, [(why, lambda m=m: variant(param, grads, **settings, mistake=m)) for m, why in MISTAKES],
                        atol=1e-6, rtol=1e-5)
    if not cause and isinstance(got, torch.Tensor) and not torch.isfinite(got).all():
        return "inf or NaN: a division by 0 (1 - beta**t is 0 at t = 0) or the root of a negative v"
    return cause


def matches_torch_adamw(mine):
    for i, (shape, settings, steps) in enumerate(CASES):
        param = random(*shape, seed=i)
        grads = [random(*shape, seed=100 * i + t) for t in range(steps)]
        expected = torch_adamw(param, grads, **settings)
        p, m, v = param.clone(), torch.zeros(shape), torch.zeros(shape)
        where = ", ".join(f"{k}={val:g}" for k, val in settings.items())
        for t, grad in enumerate(grads, start=1):
            out = mine.call(mine.adamw_step, p.clone(), grad.clone(), m.clone(), v.clone(), t, **settings)
            wrong = as_tuple(out, ("param", "exp_avg", "exp_avg_sq"))
            if wrong:
                yield wrong
                return
            p, m, v = out
        ref_p, ref_m, ref_v = expected[-1]
        after = f"after {steps} step{'s' * (steps > 1)} ({where})"
        yield compare(f"param equals torch.optim.AdamW's {after}", p, ref_p,
                      lambda: causes(p, param, grads, settings), atol=1e-6, rtol=1e-5)
        yield compare(f"exp_avg (m) equals AdamW's state {after}", m, ref_m, atol=1e-6, rtol=1e-5)
        yield compare(f"exp_avg_sq (v) equals AdamW's state {after}", v, ref_v, atol=1e-7, rtol=1e-5)


def properties(mine):
    # the first step moves every weight by about lr, whatever the gradient's size: Adam's scale invariance
    param, lr = torch.zeros(6), 1e-2
    grad = torch.tensor([1e-4, -1e-2, 1.0, -100.0, 3.0, -0.5])
    p, _, _ = mine.call(mine.adamw_step, param.clone(), grad, torch.zeros(6), torch.zeros(6), 1, lr=lr, beta1=0.9,
                        beta2=0.999, eps=1e-12, weight_decay=0.0)
    expected = -lr * grad.sign()
    yield compare("the first step moves each weight by lr against its gradient's sign, however large the gradient",
                  p, expected, lambda: causes(p, param, [grad], dict(lr=lr, beta1=0.9, beta2=0.999, eps=1e-12,
                                                                  weight_decay=0.0)), atol=1e-7)
    zero = mine.call(mine.adamw_step, torch.ones(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), 1, lr=0.1,
                     beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.5)[0]
    yield compare("a zero gradient leaves only the decay: param * (1 - lr * weight_decay)", zero,
                  torch.full((3,), 0.95), atol=1e-6)


GROUPS = [matches_torch_adamw, properties]
TRAIN = None
