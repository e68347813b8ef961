import pytest
import torch

from ragtune.retrieval.dense.pooling import cls_pool, l2_normalize, last_token_pool, mean_pool, pool, pooling_from_model_dir

# Two sequences of dim 2: row 0 right-padded (2 real tokens of 3), row 1 left-padded (2 real tokens of 3).
HIDDEN = torch.tensor(
    [
        [[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
        [[100.0, 100.0], [5.0, 6.0], [7.0, 10.0]],
    ]
)
MASK = torch.tensor([[1, 1, 0], [0, 1, 1]])


def test_mean_pool_ignores_padding():
    assert torch.allclose(mean_pool(HIDDEN, MASK), torch.tensor([[2.0, 3.0], [6.0, 8.0]]))


def test_cls_pool_takes_first_real_token_either_side():
    assert torch.equal(cls_pool(HIDDEN, MASK), torch.tensor([[1.0, 2.0], [5.0, 6.0]]))


def test_last_token_pool_either_side():
    assert torch.equal(last_token_pool(HIDDEN, MASK), torch.tensor([[3.0, 4.0], [7.0, 10.0]]))


def test_l2_normalize_hand_computed_and_zero_safe():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.allclose(l2_normalize(x), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_pool_by_name_and_unknown():
    assert torch.equal(pool("cls", HIDDEN, MASK), cls_pool(HIDDEN, MASK))
    with pytest.raises(ValueError, match="unknown pooling"):
        pool("max", HIDDEN, MASK)


def test_mean_pool_has_gradients():
    h = HIDDEN.clone().requires_grad_(True)
    mean_pool(h, MASK).sum().backward()
    # each real token gets 1 / (number of real tokens in its row); padding gets nothing
    assert torch.allclose(h.grad[:, :, 0], torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]))


def test_pooling_from_sentence_transformers_config(tmp_path):
    assert pooling_from_model_dir(tmp_path) is None
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}')
    assert pooling_from_model_dir(tmp_path) == "cls"
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode": "lasttoken"}')
    assert pooling_from_model_dir(tmp_path) == "last"
