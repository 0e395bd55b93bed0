"""torchvision's squeezenet1_0 / 1_1 and ours: same weights, same outputs."""

from __future__ import annotations

import pytest
import torch

import squeezenet as sq
from squeezenet.weights.torchvision import from_torchvision, to_torchvision

torchvision = pytest.importorskip("torchvision")

PAIRS = [("1_0", torchvision.models.squeezenet1_0), ("1_1", torchvision.models.squeezenet1_1)]


@pytest.mark.parametrize(("arch", "factory"), PAIRS)
@pytest.mark.parametrize("size", [224, 227])
def test_torchvision_weights_give_the_same_outputs(arch, factory, size):
    torch.manual_seed(1)
    theirs = factory(weights=None).eval()
    with torch.no_grad():  # torchvision's conv10 starts at N(0, 0.01): scale up so outputs are not all ~0
        for p in theirs.parameters():
            p.mul_(3.0).add_(0.01 * torch.randn_like(p))
    ours = sq.build(arch).eval()
    ours.load_state_dict(from_torchvision(theirs.state_dict(), ours))
    x = torch.randn(3, 3, size, size)
    with torch.inference_mode():
        expected, actual = theirs(x), ours(x)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("arch", "factory"), PAIRS)
def test_ours_convert_back_to_torchvision(arch, factory):
    torch.manual_seed(2)
    ours = sq.build(arch).eval()
    theirs = factory(weights=None).eval()
    theirs.load_state_dict(to_torchvision(ours), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(theirs(x), ours(x), atol=1e-5, rtol=1e-5)


def test_other_architecture_is_refused_with_the_shape():
    theirs = torchvision.models.squeezenet1_0(weights=None)
    with pytest.raises(sq.WeightsError, match=r"features\.0\.weight.*shape \(96, 3, 7, 7\).*'1_1'"):
        from_torchvision(theirs.state_dict(), sq.build("1_1"), source="v10.pth")


@pytest.mark.parametrize(("arch", "factory"), PAIRS)
def test_training_gradients_match_torchvision(arch, factory):
    """Training, not only inference, computes what torchvision's network computes: the loss and the gradient
    of every parameter agree for the same weights."""
    torch.manual_seed(3)
    theirs = factory(weights=None).train()
    with torch.no_grad():
        for p in theirs.parameters():
            p.mul_(3.0).add_(0.01 * torch.randn_like(p))
    ours = sq.build(arch).train()
    ours.load_state_dict(from_torchvision(theirs.state_dict(), ours))
    theirs.classifier[0].p = ours.classifier.dropout.p = 0.0  # dropout draws differ; everything else must not
    x, labels = torch.randn(2, 3, 224, 224), torch.tensor([3, 999])
    losses = [torch.nn.functional.cross_entropy(model(x), labels) for model in (theirs, ours)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-5)
    expected = from_torchvision({name: p.grad for name, p in theirs.named_parameters()}, ours)
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], atol=1e-5, rtol=1e-4, msg=name)
