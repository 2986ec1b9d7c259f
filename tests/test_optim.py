"""Our Muon: the Newton-Schulz step orthogonalises, and the update is torch.optim.Muon's."""

import pytest
import torch

from gptkit.optim import Muon, orthogonalize


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
