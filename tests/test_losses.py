"""The four parametrizations of DESIGN §4, checked against values computed by hand."""

import math

import pytest
import torch

from trainables.losses import (
    DISTANCE_EPS,
    LOSSES,
    DenseHead,
    DistanceHead,
    get_loss,
    one_vs_all_bce,
    softmax_cross_entropy,
)


def test_registry_is_the_papers_table():
    assert list(LOSSES) == ["softmax", "dm", "ova", "ova_dm"]
    assert [m.head for m in LOSSES.values()] == [DenseHead, DistanceHead, DenseHead, DistanceHead]
    assert [m.training_loss for m in LOSSES.values()] == [softmax_cross_entropy] * 2 + [one_vs_all_bce] * 2


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(ValueError, match="softmax, dm, ova, ova_dm"):
        get_loss("hinge")


def test_dense_head_is_affine():
    head = DenseHead(2, 3)
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
        head.linear.bias.copy_(torch.tensor([0.5, 0.0, -1.0]))
    logits = head(torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(logits, torch.tensor([[3.5, 8.0, 6.0]]))


def test_distance_head_starts_at_zero_and_gives_negative_euclidean_distance():
    head = DistanceHead(2, 3)
    assert torch.count_nonzero(head.weight) == 0
    f = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.allclose(head(f), torch.tensor([[-5.0] * 3, [0.0] * 3]), atol=1e-5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]]))
    # distances from (3, 4): 0, sqrt(9 + 9) = 4.2426, 5 (not squared)
    expected = torch.tensor([[0.0, -math.sqrt(18.0), -5.0], [-5.0, -1.0, -10.0]])
    assert torch.allclose(head(f), expected, atol=1e-5)


@pytest.mark.parametrize("precision", ["float32", "bfloat16 autocast"])
def test_distance_head_is_exact_near_centres_under_any_precision(precision):
    """‖f‖ ≈ 25, embeddings 0 to 0.1 from their centres: the expanded ‖f‖² − 2fᵀw + ‖w‖² in bf16 (what
    CUDA autocast ran) was off by up to 2.4, in float32 by up to 0.014. Within 1e-4 of float64 cdist."""
    torch.manual_seed(0)
    num_classes, dim, batch = 10, 64, 512
    centres = torch.nn.functional.normalize(torch.randn(num_classes, dim), dim=1) * 25  # (K, D)
    labels = torch.randint(0, num_classes, (batch,))
    offsets = torch.nn.functional.normalize(torch.randn(batch, dim), dim=1) * torch.rand(batch, 1) * 0.1
    f = centres[labels] + offsets  # (B, D)
    head = DistanceHead(dim, num_classes)
    with torch.no_grad():
        head.weight.copy_(centres)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "float32"):
        logits = head(f)
    expected = -torch.cdist(f.double(), centres.double())  # (B, K)
    assert logits.dtype == torch.float32
    assert (logits.double() - expected).abs().max().item() < 1e-4


def test_softmax_cross_entropy_by_hand():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([2, 0])
    first = -math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)))  # 0.40760596
    second = math.log(3.0)
    assert softmax_cross_entropy(logits, labels).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_one_vs_all_bce_sums_over_classes_by_hand():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    labels = torch.tensor([0])
    # −log σ(0) − log(1 − σ(2)) − log(1 − σ(−1))
    expected = math.log(2.0) + math.log(1 + math.exp(2.0)) + math.log(1 + math.exp(-1.0))
    assert one_vs_all_bce(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_probabilities_by_hand():
    z = torch.tensor([[0.0, -math.log(3.0)]])
    assert torch.allclose(LOSSES["softmax"].probabilities(z), torch.tensor([[0.75, 0.25]]))
    assert torch.allclose(LOSSES["ova"].probabilities(z), torch.tensor([[0.5, 0.25]]))
    # paper Eq. 6: 2σ(−d); d = 0 → 1, d = log 3 → 2/(1 + 3) = 0.5
    assert torch.allclose(LOSSES["ova_dm"].probabilities(z), torch.tensor([[1.0, 0.5]]))


@pytest.mark.parametrize("name", list(LOSSES))
def test_probabilities_lie_in_their_ranges(name):
    torch.manual_seed(0)
    method = LOSSES[name]
    head = method.head(4, 5)
    torch.nn.init.normal_(head.weight if method.is_distance else head.linear.weight)
    probs = method.probabilities(head(torch.randn(64, 4)))  # (64, 5)
    assert torch.all(probs > 0) and torch.all(probs <= 1)
    if name in ("softmax", "dm"):
        assert torch.allclose(probs.sum(dim=1), torch.ones(64), atol=1e-6)
    if name == "ova":
        assert torch.all(probs < 1)


@pytest.mark.parametrize("name", [n for n, m in LOSSES.items() if m.is_distance])
def test_gradients_are_finite_when_an_embedding_sits_on_a_class_centre(name):
    method = LOSSES[name]
    head = method.head(3, 4)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0], [1.0, -1.0, 0.5]]))
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=True)  # on centres 0 and 1
    loss = method.training_loss(head(f), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(f.grad).all() and torch.isfinite(head.weight.grad).all()
    # and the confidence on a centre is (numerically) the maximum the method allows
    probs = method.probabilities(head(f.detach()))
    if name == "ova_dm":
        assert probs[0, 0].item() == pytest.approx(1.0, abs=math.sqrt(DISTANCE_EPS))


def test_zero_initialised_distance_head_trains():
    """All centres start at the origin: the gradient must still separate them."""
    torch.manual_seed(0)
    for name in ("dm", "ova_dm"):
        method = LOSSES[name]
        head = method.head(2, 2)
        opt = torch.optim.SGD(head.parameters(), lr=0.5)
        f = torch.tensor([[2.0, 0.0], [-2.0, 0.0]])
        y = torch.tensor([0, 1])
        for _ in range(50):
            opt.zero_grad()
            method.training_loss(head(f), y).backward()
            opt.step()
        assert (method.probabilities(head(f)).argmax(dim=1) == y).all(), name
