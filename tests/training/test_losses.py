"""Losses against numbers worked out by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from ragtune.training.losses import in_batch_contrastive, lm_supervised_kl, rag_sequence_nll, rag_token_nll

L = math.log


def _example():
    # Two passages with prior 0.25 / 0.75; two real answer tokens and one padding slot (arbitrary value).
    doc_logp = torch.tensor([[L(0.25), L(0.75)]])
    tok_logp = torch.tensor([[[L(0.5), L(0.5), -7.0], [L(0.1), L(1.0), -3.0]]])
    mask = torch.tensor([[1, 1, 0]])
    return doc_logp, tok_logp, mask


def test_rag_sequence_nll_hand_computed():
    d, t, m = _example()
    # P(y|q) = 0.25 * (0.5 * 0.5) + 0.75 * (0.1 * 1.0) = 0.1375
    assert rag_sequence_nll(d, t, m).item() == pytest.approx(-L(0.1375), rel=1e-6)
    assert rag_sequence_nll(d, t, m, length_normalize=True).item() == pytest.approx(-L(0.1375) / 2, rel=1e-6)


def test_rag_token_nll_hand_computed():
    d, t, m = _example()
    # P(y1) = .25*.5 + .75*.1 = .2 ; P(y2) = .25*.5 + .75*1 = .875
    assert rag_token_nll(d, t, m).item() == pytest.approx(-L(0.2 * 0.875), rel=1e-6)


def test_reductions_and_empty_slots():
    d, t, m = _example()
    d2 = torch.tensor([[L(0.25), L(0.75)], [0.0, float("-inf")]])  # second question: one real hit, one empty slot
    t2 = torch.cat([t, torch.tensor([[[L(0.5), L(0.4), 0.0], [0.0, 0.0, 0.0]]])])
    m2 = torch.tensor([[1, 1, 0], [1, 1, 0]])
    per = rag_sequence_nll(d2, t2, m2, reduction="none")
    assert per.tolist() == pytest.approx([-L(0.1375), -L(0.2)], rel=1e-6)
    assert rag_sequence_nll(d2, t2, m2, reduction="sum").item() == pytest.approx(-L(0.1375) - L(0.2), rel=1e-6)
    d2.requires_grad_(True)
    rag_token_nll(d2, t2, m2).backward()
    assert torch.isfinite(d2.grad).all()


def test_label_smoothing_hand_computed():
    d, t, m = _example()
    smooth = torch.tensor([[[L(0.2), L(0.2), 0.0], [L(0.4), L(0.4), 0.0]]])
    # uniform-target term: 0.25 * 0.2^2 + 0.75 * 0.4^2 = 0.13
    want = 0.9 * -L(0.1375) + 0.1 * -L(0.13)
    assert rag_sequence_nll(d, t, m, label_smoothing=0.1, smooth_logp=smooth).item() == pytest.approx(want, rel=1e-6)
    # token: (.25*.2 + .75*.4)^2 = .35^2
    want_tok = 0.9 * -L(0.175) + 0.1 * -2 * L(0.35)
    assert rag_token_nll(d, t, m, label_smoothing=0.1, smooth_logp=smooth).item() == pytest.approx(want_tok, rel=1e-6)
    with pytest.raises(ValueError):
        rag_sequence_nll(d, t, m, label_smoothing=0.1)


def test_label_smoothing_single_passage_equals_torch_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    y = torch.randint(0, 11, (3, 5))
    logp = logits.log_softmax(-1)
    tok = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).unsqueeze(1)
    ours = rag_sequence_nll(torch.zeros(3, 1), tok, torch.ones(3, 5), label_smoothing=0.2, reduction="sum",
                            smooth_logp=logp.mean(-1).unsqueeze(1))
    ref = F.cross_entropy(logits.reshape(-1, 11), y.reshape(-1), label_smoothing=0.2, reduction="sum")
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_in_batch_contrastive_hand_computed():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    e = math.e
    assert in_batch_contrastive(q, p).item() == pytest.approx(L(1 + 1 / e), rel=1e-6)
    # One shared BM25 hard negative [1, 0]: row 0 scores [1, 0, 1], row 1 scores [0, 1, 0].
    hn = torch.tensor([[1.0, 0.0]])
    want = (-L(e / (2 * e + 1)) - L(e / (e + 2))) / 2
    assert in_batch_contrastive(q, p, hn).item() == pytest.approx(want, rel=1e-6)
    assert in_batch_contrastive(q, p, hn.view(1, 1, 2)).item() == pytest.approx(want, rel=1e-6)
    # temperature 0.5 doubles the scores
    assert in_batch_contrastive(q, p, temperature=0.5).item() == pytest.approx(L(1 + e ** -2), rel=1e-6)


def test_in_batch_contrastive_excludes_false_negatives():
    e = math.e
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    hn = torch.tensor([[1.0, 0.0]])
    # Row 0's hard negative is its own positive passage again: dropping it leaves row 0 with [1, 0].
    exclude = torch.tensor([[False, False, True], [False, False, False]])
    want = (L(1 + 1 / e) - L(e / (e + 2))) / 2
    assert in_batch_contrastive(q, p, hn, exclude=exclude).item() == pytest.approx(want, rel=1e-6)
    # The diagonal is the target and stays, whatever the mask says; excluding everything else gives loss 0.
    assert in_batch_contrastive(q, p, exclude=torch.ones(2, 2, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="exclude"):
        in_batch_contrastive(q, p, exclude=torch.zeros(2, 3, dtype=torch.bool))


def test_lm_supervised_kl_hand_computed():
    doc = torch.tensor([[L(0.5), L(0.5)]], requires_grad=True)
    ll = torch.tensor([[L(0.2), L(0.6)]], requires_grad=True)
    # Q = [0.25, 0.75]
    want = 0.25 * L(0.25 / 0.5) + 0.75 * L(0.75 / 0.5)
    kl = lm_supervised_kl(doc, ll)
    assert kl.item() == pytest.approx(want, rel=1e-6)
    kl.backward()
    assert ll.grad is None  # the target is detached: only the retriever learns
    assert doc.grad[0].tolist() == pytest.approx([-0.25, -0.75], rel=1e-6)
    # tau = 2: Q ∝ sqrt(P)
    a, b = math.sqrt(0.2), math.sqrt(0.6)
    qa, qb = a / (a + b), b / (a + b)
    assert lm_supervised_kl(doc, ll, tau=2.0).item() == pytest.approx(qa * L(qa / 0.5) + qb * L(qb / 0.5), rel=1e-6)
    # an empty slot is ignored whatever its LM score
    doc3 = torch.tensor([[L(0.5), L(0.5), float("-inf")]])
    ll3 = torch.tensor([[L(0.2), L(0.6), 5.0]])
    assert lm_supervised_kl(doc3, ll3).item() == pytest.approx(want, rel=1e-6)
