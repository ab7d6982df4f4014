import pytest

from clap_train.benchmark.readers import read
from tests.benchmark.fixtures import write_all


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("bench_data")
    return str(r), write_all(str(r))


def test_public_layouts_are_found_with_folds_classes_and_missing_clips(root):
    r, info = root
    esc = read("esc50", r)
    assert len(esc.items) == 40 and esc.classes == info["esc50"]["classes"]
    assert sorted(set(esc.folds)) == [1, 2, 3, 4, 5]
    assert all(f"{fold}-" == it.rel[:2] for it, fold in zip(esc.items, esc.folds))
    assert {it.labels[0] for it in esc.items} == set(esc.classes)
    us = read("us8k", r)
    assert (
        len(us.items) == 12
        and sorted(set(us.folds)) == [1, 2, 3]
        and us.classes == ["drum", "hiss", "whistle", "buzzer"]
    )
    assert all(it.rel.startswith(f"fold{f}/") for it, f in zip(us.items, us.folds))
    ac = read("audiocaps", r, "test")
    assert len(ac.items) == 7 and ac.missing == info["audiocaps"]["missing"]
    assert all(len(it.captions) == 5 for it in ac.items)  # five CSV rows per clip, grouped
    cl = read("clotho", r, "evaluation")
    assert len(cl.items) == 6 and all(len(it.captions) == 5 for it in cl.items) and not cl.missing
    assert read("esc50", r + "/nowhere") is None
    with pytest.raises(ValueError, match="valid: esc50, us8k, audiocaps, clotho"):
        read("esc-50", r)
