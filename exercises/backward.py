"""Exercise 8, backward: backpropagation by hand, checked against autograd.

PyTorch computes these for you with loss.backward(); writing them once shows where every gradient
comes from. Two pieces of every GPT:

1. Softmax + cross-entropy. With loss = mean over n of -log softmax(logits[n])[targets[n]]:
       dloss/dlogits = (softmax(logits) - onehot(targets)) / N          (N, V)
   the probabilities the model gave, minus 1 at the right token, over N for the mean.

2. A Linear layer, y = x @ weight.T + bias (nn.Linear's layout: weight is (out, in)). Given
   dout = dloss/dy (N, out):
       dx      = dout @ weight         (N, in)
       dweight = dout.T @ x            (out, in)
       dbias   = dout.sum(0)           (out,)   the bias is added to every row, so its gradient sums them
   Each gradient has the shape of what it is the gradient of; the shapes tell you where the
   transposes go.

Source: Karpathy, makemore part 4, "Becoming a Backprop Ninja" (each gradient checked against
autograd with cmp()); Goodfellow et al. 2016, "Deep Learning", 6.5.

Check it: python3 learn.py check backward
"""

import torch


def cross_entropy_backward(logits, targets):
    """logits (N, V), targets (N,) -> dlogits (N, V), the gradient of the mean cross-entropy."""
    raise NotImplementedError


def linear_backward(x, weight, dout):
    """x (N, in), weight (out, in), dout (N, out) -> dx (N, in), dweight (out, in), dbias (out,)."""
    raise NotImplementedError
