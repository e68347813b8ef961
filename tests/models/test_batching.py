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
