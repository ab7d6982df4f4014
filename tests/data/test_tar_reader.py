import io
import tarfile

import pytest

from clap_train.data.skips import SkipCounter
from clap_train.data.tar_reader import iter_tar_samples, split_name, unsafe_name


def make_tar(members, fmt=tarfile.USTAR_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
                continue
            name, data = m
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def read(data, **kw):
    skips = SkipCounter()
    out = list(iter_tar_samples(io.BytesIO(data), "s.tar", skips, **kw))
    return out, dict(skips.counts)


def test_groups_members_by_key():
    data = make_tar([("a.flac", b"A"), ("a.json", b"{}"), ("dir/b.flac", b"B"), ("dir/b.json", b"[]")])
    out, skips = read(data)
    assert [s["__key__"] for s in out] == ["a", "dir/b"]
    assert out[0]["flac"] == b"A" and out[1]["json"] == b"[]"
    assert skips == {}


def test_unknown_pickle_members_are_skipped_and_counted():
    data = make_tar([("a.flac", b"A"), ("a.pyd", b"\x80\x04evil"), ("a.pickle", b"x"), ("a.json", b"{}")])
    out, skips = read(data)
    assert set(out[0]) == {"__key__", "__shard__", "flac", "json"}
    assert skips == {"unknown_member": 2}


def test_links_and_unsafe_names_are_skipped():
    link = tarfile.TarInfo("a.flac")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    data = make_tar([link, ("../evil.flac", b"x"), ("/abs.json", b"{}"), ("ok.flac", b"A")])
    out, skips = read(data)
    assert [s["__key__"] for s in out] == ["ok"]
    assert skips == {"tar_link_or_special": 1, "tar_unsafe_name": 2}


def test_oversize_member_skipped_without_reading():
    data = make_tar([("a.flac", b"x" * 5000), ("a.json", b"{}"), ("b.flac", b"B")])
    out, skips = read(data, max_member_bytes=1000)
    assert [s["__key__"] for s in out] == ["a", "b"] and "flac" not in out[0]
    assert skips == {"member_too_large": 1}


def test_duplicate_keys_counted_and_dropped():
    data = make_tar([("a.flac", b"1"), ("b.flac", b"2"), ("a.flac", b"3"), ("a.json", b"{}")])
    out, skips = read(data)
    assert [s["__key__"] for s in out] == ["a", "b"]
    assert out[0]["flac"] == b"1"
    assert skips["duplicate_key"] >= 1


@pytest.mark.parametrize("cut", [100, 700, 1500])
def test_truncated_tar_yields_complete_samples_then_counts(cut):
    data = make_tar([("a.flac", b"A" * 600), ("a.json", b"{}"), ("b.flac", b"B" * 600), ("b.json", b"{}")])
    out, skips = read(data[:cut])
    assert skips == {"truncated_tar": 1}
    for s in out:
        assert s["flac"] in (b"A" * 600, b"B" * 600)


def test_name_helpers():
    assert split_name("d/x.y.flac") == ("d/x", "y.flac")
    assert split_name("abc.FLAC") == ("abc", "flac")
    assert unsafe_name("../x") and unsafe_name("/x") and unsafe_name("a/../../b") and not unsafe_name("a/b.c")
