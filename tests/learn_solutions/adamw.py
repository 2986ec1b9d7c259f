"""A correct solution of exercises/adamw.py."""


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=1e-2):
    decayed = param * (1 - lr * weight_decay)  # decoupled: the weight itself shrinks, apart from m and v
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    return decayed - lr * m_hat / (v_hat.sqrt() + eps), m, v
