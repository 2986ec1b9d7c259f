"""Our Muon: the Newton-Schulz step orthogonalises, and the update is torch.optim.Muon's."""

import pytest
import torch

from conftest import make_model
from gptkit.optim import Muon, hidden_matrices, optimizer_groups, orthogonalize


@pytest.mark.parametrize("shape", [(32, 96), (96, 32), (40, 64)])
def test_newton_schulz_sends_every_singular_value_near_one_and_keeps_the_directions(shape):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    G[:, 0] *= 50  # badly conditioned, as raw gradients are
    O = orthogonalize(G)
    assert O.shape == G.shape and O.dtype == torch.float32  # float32 off CUDA
    s = torch.linalg.svdvals(O)
    assert s.min() > 0.5 and s.max() < 1.3  # the quintic trades exactness for speed (Jordan et al.)
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    cosine = (O * (U @ Vh)).sum() / (O.norm() * (U @ Vh).norm())
    assert cosine > 0.95  # close to U V^T, far from G itself
    assert (G * (U @ Vh)).sum() / (G.norm() * (U @ Vh).norm()) < 0.5


def test_the_update_is_torch_muon_with_adamw_matched_lr():
    """torch.optim.Muon iterates in bfloat16; ours in float32 on CPU: the same steps within that precision."""
    torch.manual_seed(0)
    ours, theirs = torch.nn.Parameter(torch.randn(64, 24)), torch.nn.Parameter(torch.zeros(64, 24))
    theirs.data.copy_(ours.data)
    opt_ours = Muon([ours], lr=0.02, weight_decay=0.1, momentum=0.9)
    opt_theirs = torch.optim.Muon([theirs], lr=0.02, weight_decay=0.1, momentum=0.9, adjust_lr_fn="match_rms_adamw")
    start = ours.detach().clone()
    for _ in range(3):
        grad = torch.randn(64, 24)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt_ours.step()
        opt_theirs.step()
    step_ours, step_theirs = ours.detach() - start, theirs.detach() - start
    assert step_ours.norm() > 0.1
    assert (step_ours - step_theirs).norm() / step_theirs.norm() < 0.02
    assert torch.equal(opt_ours.state[ours]["momentum_buffer"], opt_theirs.state[theirs]["momentum_buffer"])


def test_muon_refuses_what_is_not_a_matrix():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


@pytest.mark.parametrize("bias", [True, False])
def test_optimizer_groups_decay_matrices_only_and_cover_every_parameter_once(bias):
    model = make_model(bias=bias, tie_weights=False)
    groups = optimizer_groups(model, weight_decay=0.1)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    not_decayed = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    listed = [id(p) for g in groups for p in g["params"]]
    assert len(listed) == len(set(listed)) == len({id(p) for p in model.parameters()})
    for name, p in model.named_parameters():
        if p.dim() == 2:
            assert id(p) in decayed, name
        else:
            assert id(p) in not_decayed, name
            assert name.endswith(".bias") or ".ln_" in name or name.startswith("transformer.ln_f"), name
    assert {id(model.lm_head.weight), id(model.transformer.wte.weight)} <= decayed
    # AdamW accepts the groups as they are
    torch.optim.AdamW(groups, lr=1e-3)


def test_tied_weight_appears_once_in_optimizer_groups():
    model = make_model()
    listed = [p for g in optimizer_groups(model, 0.1) for p in g["params"]]
    assert sum(p is model.lm_head.weight for p in listed) == 1


def test_hidden_matrices_are_the_blocks_2d_weights_muons_share():
    model = make_model(tie_weights=False)
    hidden = {id(p) for p in hidden_matrices(model)}
    expected = {id(p) for n, p in model.named_parameters() if n.startswith("transformer.h.") and p.dim() == 2}
    assert hidden == expected and id(model.transformer.wte.weight) not in hidden
