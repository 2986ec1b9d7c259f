"""A correct solution of exercises/loss.py."""

import torch


def cross_entropy(logits, targets):
    shifted = logits - logits.max(dim=-1, keepdim=True).values  # the log-sum-exp trick
    log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()  # (N, V)
    return -log_probs[torch.arange(len(targets)), targets].mean()
