"""Exercise 9, adamw: one AdamW step by hand, checked against torch.optim.AdamW.

Adam keeps two running averages per weight: m of the gradient and v of its square. Dividing one
by the square root of the other makes each step about lr long whatever the gradient's scale.
Both averages start at 0, so early on they are too small: the bias correction divides that out.
AdamW decays the weight itself, apart from the averages ("decoupled" weight decay). At step t
(1 for the first):

    m     = beta1 * m + (1 - beta1) * grad
    v     = beta2 * v + (1 - beta2) * grad^2
    m_hat = m / (1 - beta1^t)
    v_hat = v / (1 - beta2^t)
    param = param * (1 - lr * weight_decay) - lr * m_hat / (sqrt(v_hat) + eps)

Sources: Kingma and Ba 2015, "Adam", Algorithm 1; Loshchilov and Hutter 2019, "Decoupled Weight
Decay Regularization", Algorithm 2. train.py trains with torch.optim.AdamW (gptkit/optim.py).

Hint: return new tensors; there is no state to keep between calls but the m and v you return.

Check it: python3 learn.py check adamw
"""

import torch


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=1e-2):
    """param, grad, exp_avg (m), exp_avg_sq (v): tensors of one shape; step: t, 1 for the first update.
    -> the new (param, exp_avg, exp_avg_sq)."""
    raise NotImplementedError
