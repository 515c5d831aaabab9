"""interpretable.sanity: cascading randomization on copies, seeded, block by block."""

from __future__ import annotations

import pytest
import torch

import interpretable as itp
from interpretable import sanity


@pytest.fixture
def model():
    torch.manual_seed(0)
    return itp.models.create("resnet18", num_classes=10, width=0.125).eval()


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _changed_blocks(a, b):
    # top-level names ("layer4", "fc", ...) whose tensors differ between two state dicts
    return {k.split(".")[0] for k in a if not torch.equal(a[k], b[k])}


def test_blocks_in_forward_order(model):
    assert [n for n, _ in sanity.blocks(model)] == ["stem", "layer1", "layer2", "layer3",
                                                     "layer4", "fc"]
    mb = itp.models.create("mobilenet_v2", num_classes=10, width=0.25)
    names = [n for n, _ in sanity.blocks(mb)]
    assert names[0] == "features.0" and names[-1] == "classifier"
    assert len(names) == len(mb.features) + 1


def test_randomized_copy_differs_exactly_in_the_top_blocks(model):
    before = _state(model)
    rng = torch.get_rng_state()
    net = sanity.randomized(model, 2, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # global random state untouched
    assert _changed_blocks(before, _state(model)) == set()  # the original is unchanged
    assert _changed_blocks(before, _state(net)) == {"fc", "layer4"}
    # every weight of the re-initialized blocks is new, batch-norm statistics reset
    assert not torch.equal(net.fc.weight, model.fc.weight)
    bn = net.layer4[0].bn1
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert sanity.randomized(model, 0) is not model
    assert _changed_blocks(before, _state(sanity.randomized(model, 0))) == set()


def test_seeded_and_equal_to_the_cascade(model):
    a, b = sanity.randomized(model, 3, seed=1), sanity.randomized(model, 3, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(_state(a).values(), _state(b).values(),
                                                   strict=True))
    c = sanity.randomized(model, 3, seed=2)
    assert not torch.equal(a.fc.weight, c.fc.weight)
    before = _state(model)
    steps = list(sanity.cascade(model, seed=1))
    assert [n for n, _ in steps] == ["none", "fc", "layer4", "layer3", "layer2", "layer1", "stem"]
    assert _changed_blocks(before, _state(model)) == set()
    for k, (_, net) in enumerate(steps):
        expected = sanity.randomized(model, k, seed=1)
        assert all(torch.equal(u, v) for u, v in zip(_state(net).values(),
                                                       _state(expected).values(), strict=True))
    assert len({id(net) for _, net in steps} | {id(model)}) == len(steps) + 1
    assert [n for n, _ in sanity.cascade(model, steps=2)] == ["none", "fc", "layer4"]
    with pytest.raises(ValueError, match="k must be"):
        sanity.randomized(model, 7)


def test_explain_and_similarity(model):
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([1, 2, 3])
    maps = sanity.explain(model, x, y)
    assert set(maps) == {"gradient", "guided backprop", "Grad-CAM", "FastCAM"}
    for v in maps.values():
        assert v.shape == (3, 32, 32) and v.min() >= 0 and v.max() <= 1
    rho, ssim = sanity.similarity(maps["gradient"], maps["gradient"])
    assert rho.tolist() == [1, 1, 1] and torch.allclose(ssim, torch.ones(3))
    other = sanity.explain(sanity.randomized(model, 6), x, y,
                           methods=["gradient"])
    rho, ssim = sanity.similarity(maps["gradient"], other["gradient"])
    assert rho.shape == ssim.shape == (3,) and (rho < 0.99).all()
