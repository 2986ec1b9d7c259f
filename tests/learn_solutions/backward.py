"""A correct solution of exercises/backward.py."""

import torch


def cross_entropy_backward(logits, targets):
    probs = torch.softmax(logits, dim=-1)
    probs[torch.arange(len(targets)), targets] -= 1
    return probs / len(targets)


def linear_backward(x, weight, dout):
    return dout @ weight, dout.T @ x, dout.sum(0)
