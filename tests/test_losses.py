"""The DQN losses against their formulas computed in numpy."""

import numpy as np
import pytest
import torch

from skdqn.training._losses import (
    AUTO_PROXY_MIN_CLASSES,
    choose_loss,
    pair_similarity,
    pairwise_loss,
    proxy_loss,
    quantization_loss,
)


def _random_labels(rng, n, n_classes, multilabel):
    if multilabel:
        Y = (rng.random((n, n_classes)) < 0.3).astype(np.float32)
        Y[0] = 0  # an item with no label: similar to nothing
        return Y
    Y = np.zeros((n, n_classes), np.float32)
    Y[np.arange(n), rng.integers(0, n_classes, n)] = 1
    return Y


def _reference_similarity(Y):
    n = Y.shape[0]
    S = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            S[i, j] = 1.0 if np.any((Y[i] > 0) & (Y[j] > 0)) else -1.0
    return S


def _reference_pair_loss(Z, S, kind, weighting):
    n, R = Z.shape
    terms = {1: [], -1: []}
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if kind == "cosine":
                norm = np.linalg.norm(Z[i]) * np.linalg.norm(Z[j])
                sim = Z[i] @ Z[j] / norm if norm > 0 else 0.0
            else:
                sim = Z[i] @ Z[j] / R
            terms[int(S[i, j])].append((S[i, j] - sim) ** 2)
    if weighting == "uniform":
        return np.mean(terms[1] + terms[-1])
    return np.mean([np.mean(t) for t in terms.values() if t])


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_similarity_matches_definition(multilabel, seed):
    rng = np.random.default_rng(seed)
    Y = _random_labels(rng, 12, 4, multilabel)
    S = pair_similarity(torch.from_numpy(Y)).numpy()
    np.testing.assert_array_equal(S, _reference_similarity(Y))


@pytest.mark.parametrize("kind", ["cosine", "inner_product"])
@pytest.mark.parametrize("weighting", ["uniform", "balanced"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairwise_loss_matches_formula(kind, weighting, seed):
    rng = np.random.default_rng(seed)
    Z = np.tanh(rng.normal(size=(9, 6)))
    Z[3] = Z[2]  # a duplicated row
    Y = _random_labels(rng, 9, 3, multilabel=seed == 2)
    S = _reference_similarity(Y)
    got = pairwise_loss(torch.from_numpy(Z), torch.from_numpy(S), kind=kind, weighting=weighting)
    np.testing.assert_allclose(got.item(), _reference_pair_loss(Z, S, kind, weighting), rtol=1e-10)


def test_pairwise_loss_zero_row_is_finite():
    Z = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    S = torch.tensor([[1.0, -1, 1], [-1, 1, -1], [1, -1, 1]], dtype=torch.float64)
    loss = pairwise_loss(Z, S)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(Z.grad).all()
    # cos is taken as 0 for a zero vector: every pair contributes 1.
    assert loss.item() == pytest.approx(1.0)


def test_pairwise_loss_exact_small_case():
    Z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    S = torch.tensor([[1.0, 1.0, -1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    assert pairwise_loss(Z, S).item() == 0.0  # perfect agreement
    S_wrong = -S
    # Off-diagonal pairs all have |s - cos| = 2.
    assert pairwise_loss(Z, S_wrong).item() == pytest.approx(4.0)


def test_pairwise_loss_rejects_unknown_options():
    Z, S = torch.zeros(2, 2), torch.ones(2, 2)
    with pytest.raises(ValueError, match="kind"):
        pairwise_loss(Z, S, kind="dot")
    with pytest.raises(ValueError, match="weighting"):
        pairwise_loss(Z, S, weighting="x")


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("M,K,ds", [(1, 3, 4), (2, 5, 3), (4, 2, 1)])
def test_quantization_loss_matches_formula(seed, M, K, ds):
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(M, K, ds))
    codes = rng.integers(0, K, size=(7, M))
    Z = rng.normal(size=(7, M * ds))
    expected = np.mean(
        [sum(np.sum((Z[i, m * ds : (m + 1) * ds] - C[m, codes[i, m]]) ** 2) for m in range(M)) for i in range(7)]
    )
    got = quantization_loss(torch.from_numpy(Z), torch.from_numpy(C), torch.from_numpy(codes))
    np.testing.assert_allclose(got.item(), expected, rtol=1e-10)


def test_quantization_loss_is_zero_on_codewords():
    C = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    codes = torch.tensor([[1], [0]])
    assert quantization_loss(torch.tensor([[2.0, 3.0], [0.0, 1.0]]), C, codes).item() == 0.0


@pytest.mark.parametrize("kind", ["cosine", "inner_product"])
@pytest.mark.parametrize("weighting", ["uniform", "balanced"])
def test_pairwise_loss_gradient(kind, weighting):
    # The Gram matrix has a hand-written backward ((G + G^T) @ x): check it
    # against finite differences in float64.
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    S = pair_similarity(torch.eye(3, dtype=torch.float64)[[0, 1, 0, 2, 1, 0]])
    assert torch.autograd.gradcheck(
        lambda z: pairwise_loss(z, S, kind=kind, weighting=weighting), (z,)
    )


def _reference_proxy_loss(Z, P, Y, scale, margin):
    losses = []
    for z, y in zip(Z, Y):
        if not y.any():
            continue  # no label, no target
        cos = np.array([z @ p / (np.linalg.norm(z) * np.linalg.norm(p)) for p in P])
        logits = scale * (cos - margin * y)
        log_softmax = logits - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max()
        losses.append(-np.sum(y / y.sum() * log_softmax))
    return np.mean(losses) if losses else 0.0


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("scale,margin", [(16.0, 0.2), (4.0, 0.0), (30.0, 0.5)])
def test_proxy_loss_matches_formula(multilabel, scale, margin):
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(9, 6))
    Z[4] = Z[3]  # a duplicated row
    P = rng.normal(size=(4, 6)) * rng.uniform(0.1, 5, size=(4, 1))  # proxies of any norm
    Y = _random_labels(rng, 9, 4, multilabel)
    got = proxy_loss(torch.from_numpy(Z), torch.from_numpy(P), torch.from_numpy(Y).double(), scale=scale, margin=margin)
    np.testing.assert_allclose(got.item(), _reference_proxy_loss(Z, P, Y.astype(np.float64), scale, margin), rtol=1e-10)


def test_proxy_loss_rewards_the_right_class_and_handles_empty_rows():
    P = torch.eye(3, dtype=torch.float64)
    Z = torch.tensor([[2.0, 0.1, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    right = proxy_loss(Z, P, torch.tensor([[1.0, 0, 0], [0, 1, 0]], dtype=torch.float64))
    wrong = proxy_loss(Z, P, torch.tensor([[0.0, 0, 1], [0, 1, 0]], dtype=torch.float64))
    assert right < wrong
    right.backward()  # a zero embedding keeps a finite gradient
    assert torch.isfinite(Z.grad).all()
    nobody = proxy_loss(Z, P, torch.zeros(2, 3, dtype=torch.float64))
    assert nobody.item() == 0.0


def test_proxy_loss_gradient():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    P = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    Y = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1]]
    assert torch.autograd.gradcheck(lambda z, P: proxy_loss(z, P, Y, scale=8.0, margin=0.1), (z, P))


def test_choose_loss_by_label_structure():
    few = np.arange(600) % (AUTO_PROXY_MIN_CLASSES - 1)
    many = np.arange(600) % AUTO_PROXY_MIN_CLASSES
    assert choose_loss(few) == "pairwise"
    assert choose_loss(many) == "proxy"
    assert choose_loss(np.array([f"c{i}" for i in many])) == "proxy"
    multilabel = np.zeros((600, 50), bool)
    multilabel[np.arange(600), np.arange(600) % 50] = True
    assert choose_loss(multilabel) == "pairwise"  # multi-label: pairs, whatever the label count
