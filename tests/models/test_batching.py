from ragtune.models.batching import input_order, length_buckets


def test_length_buckets_cover_every_row_once_and_bound_padding():
    lengths = [300, 120, 310, 118, 200, 121, 305, 5]
    groups = length_buckets(lengths, max_rows=3)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) <= 3 for g in groups)
    for g in groups:
        assert len(g) * max(lengths[i] for i in g) <= 1.15 * sum(lengths[i] for i in g)
    assert [sorted(g) for g in groups] == [[7], [1, 3, 5], [4], [0, 2, 6]]
    assert length_buckets([7] * 5, max_rows=8) == [[0, 1, 2, 3, 4]]  # equal lengths: one pass


def test_input_order_undoes_the_grouping():
    lengths = [300, 120, 310, 118, 200, 121, 305, 5]
    groups = length_buckets(lengths, max_rows=3)
    concatenated = [lengths[i] for g in groups for i in g]
    assert [concatenated[p] for p in input_order(groups)] == lengths


def test_max_tokens_bounds_each_pass_padded_size():
    lengths = [300, 120, 310, 118, 200, 121, 305, 5]
    # without the bound 300, 305 and 310 share a pass (3 x 310 = 930 padded tokens)
    assert [sorted(g) for g in length_buckets(lengths, max_rows=8)] == [[7], [1, 3, 5], [4], [0, 2, 6]]
    assert [sorted(g) for g in length_buckets(lengths, max_rows=8, max_tokens=400)] == [[7], [1, 3, 5], [4], [0], [6], [2]]
    # 3 x 121 = 363 > 300: the third short row starts a pass of its own
    assert [sorted(g) for g in length_buckets(lengths, max_rows=8, max_tokens=300)] == [[7], [1, 3], [5], [4], [0], [6], [2]]
    # equal rows that slack alone would join (1000 <= 1.15 x 1000): each is over the bound, so each is alone
    assert length_buckets([500, 500], max_rows=8) == [[0, 1]]
    assert length_buckets([500, 500], max_rows=8, max_tokens=100) == [[0], [1]]
