"""Safe .tar.gz extraction and parallel text: real Multi30k archives and crafted bad ones."""

import io
import os
import tarfile
from pathlib import Path

import pytest

from tasks.archive import ArchiveError, find_member, read_parallel, safe_extract
from tests.conftest import MIRROR

MULTI30K = MIRROR / "multi30k"

SPLITS = [
    ("training.tar.gz", "train", 29_000),
    ("validation.tar.gz", "val", 1_014),
    ("mmt16_task1_test.tar.gz", "test", 1_000),
]


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """Write a .tar.gz holding exactly these members (data only for regular files)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def file_info(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def special_info(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# -- real archives ------------------------------------------------------------------------------


@pytest.mark.parametrize(("archive", "split", "pairs"), SPLITS)
def test_real_archive_gives_aligned_pairs(tmp_path, archive, split, pairs):
    dest = tmp_path / split
    names = safe_extract(MULTI30K / archive, dest)

    assert names == sorted(names)
    assert not [n for n in names if Path(n).name.startswith("._")]
    de, en = find_member(names, f"{split}.de"), find_member(names, f"{split}.en")
    result = read_parallel(dest / de, dest / en)
    assert len(result) == pairs
    assert all(src and trg for src, trg in result)
    assert leftovers(tmp_path) == []


def test_test_archive_skips_macos_forks(tmp_path):
    archive = MULTI30K / "mmt16_task1_test.tar.gz"
    with tarfile.open(archive) as tar:
        assert any(Path(m.name).name.startswith("._") for m in tar.getmembers())
    names = safe_extract(archive, tmp_path / "test")
    assert names == ["test.de", "test.en", "test.fr"]
    assert not list((tmp_path / "test").rglob("._*"))
    first = read_parallel(tmp_path / "test" / "test.de", tmp_path / "test" / "test.en")[0]
    assert first == (
        "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
        "A man in an orange hat starring at something.",
    )


# -- crafted archives ---------------------------------------------------------------------------


def test_extracts_files_dirs_and_skips_junk(tmp_path):
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        [
            (special_info("data", tarfile.DIRTYPE), None),
            (file_info("./data/a.txt"), b"a\n"),
            (file_info("data/sub/b.txt"), b"b\n"),
            (file_info("data/._a.txt"), b"junk"),
            (file_info("__MACOSX/data/._b.txt"), b"junk"),
            (special_info("empty", tarfile.DIRTYPE), None),
        ],
    )
    dest = tmp_path / "out"
    assert safe_extract(archive, dest) == ["data/a.txt", "data/sub/b.txt"]
    assert (dest / "data" / "sub" / "b.txt").read_bytes() == b"b\n"
    assert (dest / "empty").is_dir()
    assert not (dest / "__MACOSX").exists() and not (dest / "data" / "._a.txt").exists()
    assert leftovers(tmp_path) == []


def test_existing_dest_is_replaced(tmp_path):
    dest = tmp_path / "out"
    (dest / "stale").mkdir(parents=True)
    (dest / "stale" / "old.txt").write_text("old")
    archive = make_tar(tmp_path / "ok.tar.gz", [(file_info("new.txt"), b"new")])

    assert safe_extract(archive, dest) == ["new.txt"]
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert leftovers(tmp_path) == []


BAD_MEMBERS = [
    pytest.param("../evil", file_info("../evil"), id="dotdot"),
    pytest.param("a/../../evil", file_info("a/../../evil"), id="nested-dotdot"),
    pytest.param("/tmp/evil-abs", file_info("/tmp/evil-abs"), id="absolute"),
    pytest.param("link", special_info("link", tarfile.SYMTYPE, "/etc/passwd"), id="symlink"),
    pytest.param("hard", special_info("hard", tarfile.LNKTYPE, "good.txt"), id="hardlink"),
    pytest.param("pipe", special_info("pipe", tarfile.FIFOTYPE), id="fifo"),
    pytest.param("tty", special_info("tty", tarfile.CHRTYPE), id="chardev"),
    pytest.param("disk", special_info("disk", tarfile.BLKTYPE), id="blockdev"),
]


@pytest.mark.parametrize(("name", "info"), BAD_MEMBERS)
def test_bad_member_is_refused_and_nothing_left(tmp_path, name, info):
    data = b"x" if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else None
    # A good file first, so a non-atomic extractor would leave it behind.
    archive = make_tar(tmp_path / "bad.tar.gz", [(file_info("good.txt"), b"ok"), (info, data)])
    with tarfile.open(archive) as tar:
        assert tar.getnames()[-1] == name
    parent = tmp_path / "work"
    parent.mkdir()
    dest = parent / "out"

    with pytest.raises(ArchiveError) as caught:
        safe_extract(archive, dest)
    message = str(caught.value)
    assert name in message and str(archive) in message
    assert list(parent.iterdir()) == []
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil-abs").exists()


def test_failed_extraction_keeps_existing_dest(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("keep")
    archive = make_tar(
        tmp_path / "bad.tar.gz", [(file_info("good.txt"), b"ok"), (file_info("../evil"), b"x")]
    )
    with pytest.raises(ArchiveError, match=r"\.\./evil"):
        safe_extract(archive, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]
    assert leftovers(tmp_path) == []


def test_corrupt_archive_raises_and_leaves_nothing(tmp_path):
    good = make_tar(tmp_path / "good.tar.gz", [(file_info("a.txt"), os.urandom(100_000))])
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(good.read_bytes()[:200])
    parent = tmp_path / "work"
    parent.mkdir()
    with pytest.raises(ArchiveError, match="cut.tar.gz"):
        safe_extract(archive, parent / "out")
    assert list(parent.iterdir()) == []


# -- parallel text ------------------------------------------------------------------------------


def test_mismatched_line_counts_raise(tmp_path):
    src, trg = tmp_path / "x.de", tmp_path / "x.en"
    src.write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    trg.write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(ArchiveError) as caught:
        read_parallel(src, trg)
    message = str(caught.value)
    assert str(src) in message and str(trg) in message
    assert "has 3 lines" in message and "has 2" in message


def test_trailing_newline_adds_no_pair(tmp_path):
    src, trg = tmp_path / "x.de", tmp_path / "x.en"
    src.write_bytes("Grüße\r\n\r\nzwei\r\n".encode())
    trg.write_bytes(b"hello\n\ntwo")
    assert read_parallel(src, trg) == [("Grüße", "hello"), ("", ""), ("zwei", "two")]


def test_invalid_utf8_names_file(tmp_path):
    src, trg = tmp_path / "x.de", tmp_path / "x.en"
    src.write_bytes(b"\xff\xfe\n")
    trg.write_text("one\n")
    with pytest.raises(ArchiveError, match="x.de"):
        read_parallel(src, trg)


def test_find_member(tmp_path):
    names = ["data/train.de", "data/train.en"]
    assert find_member(names, "train.de") == "data/train.de"
    with pytest.raises(ArchiveError, match="train.fr"):
        find_member(names, "train.fr")
    with pytest.raises(ArchiveError, match="2 files"):
        find_member(names + ["old/train.de"], "train.de")
