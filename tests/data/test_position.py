from clap_train.data.position import StreamPosition


def test_position_moves_past_a_trained_batch_and_never_changes_in_place():
    p0 = StreamPosition(carry={"s": {"x": 1}})
    p1 = p0.after(0, 0, {"mix": 6})
    p2 = p1.after(1, 1, {"mix": 6})
    assert (p0.batches, p0.slots) == (0, {})  # the dataset may hold p0 while the loader moves on
    assert (p2.batches, p2.slots, p2.carry) == (2, {0: {"mix": 6}, 1: {"mix": 6}}, {"s": {"x": 1}})
