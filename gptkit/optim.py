"""The optimizers: AdamW for everything (GPT-2, nanoGPT), or Muon for the 2-D weight matrices inside
the transformer blocks with AdamW for the rest. train.py's train_step takes the step.

Muon: momentum, orthogonalised (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/).
The same update as torch.optim.Muon with adjust_lr_fn="match_rms_adamw" (Liu et al. 2025, "Muon is
Scalable for LLM Training"), so one learning rate and schedule serve Muon and AdamW. Ours exists
for one reason: torch's runs the Newton-Schulz iteration in bfloat16 on every device, and a CPU
without bfloat16 units (AVX2 only) runs those matmuls ~30x slower than float32, which made a CPU
step twice as slow. Here the iteration is bfloat16 on CUDA (tensor cores) and float32 elsewhere.
"""

import math

import torch

from gptkit.errors import first_line

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # quintic, chosen for the steepest slope at 0 (Jordan et al.)


def orthogonalize(G, steps=5, eps=1e-7):
    """Approximately U V^T for G = U S V^T, by a Newton-Schulz iteration (singular values -> ~1).

    X <- a X + (b A + c A^2) X with A = X X^T, after scaling X so that its spectral norm is <= 1.
    """
    a, b, c = NS_COEFFICIENTS
    X = G.bfloat16() if G.is_cuda else G.float()  # (rows, cols)
    wide = G.size(0) <= G.size(1)
    X = X if wide else X.T  # (small, large): the Gram matrix A is the small one
    X = X / X.norm().clamp(min=eps)
    for _ in range(steps):
        A = X @ X.T  # (small, small)
        B = torch.addmm(A, A, A, beta=b, alpha=c)  # b A + c A^2
        X = torch.addmm(X, B, X, beta=a)  # a X + B X
    return X if wide else X.T


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, orthogonalised, scaled to AdamW's update size: 0.2 * sqrt(max(rows, cols))."""

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, ns_steps=5):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, ns_steps=ns_steps))
        for group in self.param_groups:
            if any(p.ndim != 2 for p in group["params"]):
                raise ValueError("Muon only takes 2-D weight matrices")

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)  # buf = momentum * buf + (1 - momentum) * grad
                update = orthogonalize(p.grad.lerp(buf, momentum), group["ns_steps"])  # Nesterov look-ahead
                p.mul_(1 - lr * group["weight_decay"])  # decoupled weight decay, as AdamW
                p.add_(update.to(p.dtype), alpha=-lr * 0.2 * math.sqrt(max(p.shape)))


class Optimizers:
    """Several optimizers stepped as one: Muon for the hidden matrices, AdamW for the rest."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self):
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none=True):
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state):
        for opt, s in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)


def load_optimizer_state(optimizer, state):
    """Restore a saved optimizer state, or raise ValueError saying why it does not fit this optimizer and
    model. torch checks the parameter counts but not the shapes, which would fail at the first step."""
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError) as e:
        raise ValueError(first_line(e)) from None
    for opt in getattr(optimizer, "optimizers", [optimizer]):
        params = {id(p): p for group in opt.param_groups for p in group["params"]}
        if any(id(key) not in params for key in opt.state):  # torch keeps state it cannot match, as it was
            raise ValueError("it holds state for parameters the model does not have")
        for p, saved in opt.state.items():
            if not isinstance(saved, dict):
                raise ValueError(f"its state for a {tuple(p.shape)} parameter is a {type(saved).__name__}, not a dict")
            for name, value in saved.items():
                if torch.is_tensor(value) and value.dim() and value.shape != p.shape:  # `step` is 0-d
                    raise ValueError(f"its {name} for a {tuple(p.shape)} parameter is {tuple(value.shape)}")


def optimizer_groups(model, weight_decay):
    """Decay 2-D weights (matmuls, embeddings); never biases or norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def hidden_matrices(model):
    """The 2-D weights inside the blocks: Muon's (embeddings and head stay with AdamW)."""
    return [p for p in model.transformer.h.parameters() if p.dim() == 2]


def make_optimizer(model, cfg, device):
    """AdamW (fused on CUDA: one kernel for all parameters); or Muon for the 2-D weights inside blocks.

    Muon (Jordan et al. 2024) orthogonalises each matrix's momentum with a Newton-Schulz
    iteration; the speedrun found it trains in fewer steps. Its lr is scaled to match AdamW's
    update size (Liu et al. 2025), so one learning_rate and schedule serve both.
    """
    fused = device.startswith("cuda")
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "adamw":
        groups = optimizer_groups(model, cfg.weight_decay)
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=betas, fused=fused)
    hidden = {id(p) for p in hidden_matrices(model)}
    groups = [{**g, "params": [p for p in g["params"] if id(p) not in hidden]}
              for g in optimizer_groups(model, cfg.weight_decay)]
    return Optimizers(
        Muon(hidden_matrices(model), lr=cfg.learning_rate, weight_decay=cfg.weight_decay),
        torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=betas, fused=fused),
    )
