"""interpretable.peers: every adapter runs, and where a peer computes what we compute, it
agrees with us on the same model and input."""

from __future__ import annotations

import pytest
import torch
from _models import randomize_bn

import interpretable as itp
from interpretable import peers
from interpretable.attribution import GradCAM, gradient, guided_backprop

INSTALLED = peers.installed()


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = randomize_bn(itp.models.create("resnet18", width=0.125)).eval()
    return model, torch.randn(3, 3, 32, 32), torch.tensor([1, 5, 9])


@pytest.mark.parametrize("library,key", sorted(peers.PEER_NAMES))
def test_every_adapter_runs_and_leaves_no_hooks(setup, library, key):
    if not INSTALLED[library]:
        pytest.skip(f"{library} is not installed")
    model, x, y = setup
    options = {"n": 2} if key == "smoothgrad" else {"batch_size": 64} \
        if key == "scorecam" else {}
    out = peers.peer(library, key, model, **options)(x, y)
    assert isinstance(out, torch.Tensor) and out.shape[0] == 3 and torch.isfinite(out).all()
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_peers_agree_with_ours(setup):
    model, x, y = setup
    if INSTALLED["captum"]:
        torch.testing.assert_close(peers.peer("captum", "gradient", model)(x, y),
                                   gradient(model, x, y))
        torch.testing.assert_close(peers.peer("captum", "guided", model)(x, y),
                                   guided_backprop(model, x, y))
    if INSTALLED["pytorch-grad-cam"]:
        with GradCAM(model) as cam:
            ours = cam(x, y, normalize=True)
        theirs = peers.peer("pytorch-grad-cam", "gradcam", model)(x, y)
        assert (ours - theirs).abs().max() < 1e-4


def test_unknown_adapter_is_a_clear_error(setup):
    with pytest.raises(ValueError, match="no torchcam adapter for method 'smoe'"):
        peers.peer("torchcam", "smoe", setup[0])
    with pytest.raises(ValueError, match="library must be one of"):
        peers.supported("shap")
