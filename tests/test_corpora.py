"""Named corpora: download through a local mirror, checksum, preparation of the splits.

Every download goes to an HTTP server on 127.0.0.1 serving tiny fake archives, with
the specs' digests swapped for the fixtures' (same algorithm, same code path)."""
import dataclasses
import hashlib
import zipfile

import pytest

from jax_rnnlm import corpora
from jax_rnnlm.tokenizer import DataError
from support.http_mirror import serving, unreachable_url

WIKI = {s: f" = Heading {s} = \n\n the {s} text with <unk> and ü \n".encode()
        for s in corpora.SPLITS}
# 600 bytes: every byte value, then UTF-8 text (multi-byte characters, \r\n).
ENWIK8 = bytes(range(256)) * 2 + ("<page>Zürich – 東京</page>\r\n".encode() * 4)[:88]
TEXT8 = b" anarchism originated as a term of abuse" * 25                        # 1000 bytes


def _zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _for_fixture(name, archive):
    """The named spec with its published digest replaced by the fixture archive's."""
    spec = corpora.SPECS[name]
    source = spec.sources[0]
    digest = hashlib.new(source.algo, archive.read_bytes()).hexdigest()
    return dataclasses.replace(spec, sources=(dataclasses.replace(source, digest=digest),))


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """(folder served, base URL): the fake archives of wikitext-2, enwik8 and text8."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # a proxy in the environment must not see these
    folder = tmp_path / "mirror"
    folder.mkdir()
    _zip(folder / "wikitext-2-v1.zip", {f"wikitext-2/wiki.{s}.tokens": t for s, t in WIKI.items()})
    _zip(folder / "enwik8.zip", {"enwik8": ENWIK8})
    _zip(folder / "text8.zip", {"text8": TEXT8})
    (folder / "input.txt").write_text("First Citizen:\nBefore we proceed any further, hear me.\n")
    with serving(folder) as url:
        yield folder, url


def _split_bytes(folder):
    return {s: (folder / f"{s}.txt").read_bytes() for s in corpora.SPLITS}


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".tmp", ".part"))


def test_each_corpus_has_its_level():
    assert {n: corpora.level_of(n) for n in corpora.NAMES} == {
        "ptb": "word", "tinyshakespeare": "char", "wikitext-2": "word",
        "wikitext-103": "word", "enwik8": "char", "text8": "char"}


def test_unknown_name_lists_all_names(tmp_path):
    with pytest.raises(DataError) as e:
        corpora.fetch("wikitext-3", home=tmp_path)
    assert all(name in str(e.value) for name in corpora.NAMES)


def test_published_digests_have_the_length_of_their_algorithm():
    for spec in corpora.SPECS.values():
        for s in spec.sources:
            assert len(s.digest) == 2 * hashlib.new(s.algo).digest_size, s.url
            int(s.digest, 16)


def test_wikitext_members_become_the_three_splits(tmp_path, mirror):
    folder, url = mirror
    spec = _for_fixture("wikitext-2", folder / "wikitext-2-v1.zip")
    got = corpora.fetch_spec(spec, home=tmp_path / "home", mirror=url)
    assert got == tmp_path / "home" / "wikitext-2"
    assert _split_bytes(got) == WIKI
    assert (got / corpora.MANIFEST).is_file() and _leftovers(got) == []


def test_enwik8_cut_90_5_5_with_every_byte_one_character(tmp_path, mirror):
    folder, url = mirror
    got = corpora.fetch_spec(_for_fixture("enwik8", folder / "enwik8.zip"),
                             home=tmp_path, mirror=url)
    texts = {s: (got / f"{s}.txt").read_bytes().decode("utf-8") for s in corpora.SPLITS}
    assert [len(texts[s]) for s in corpora.SPLITS] == [540, 30, 30]  # 600 · (0.9, 0.05, 0.05)
    joined = "".join(texts[s] for s in corpora.SPLITS)
    assert joined.encode("latin-1") == ENWIK8  # one character per byte, \r and \n untouched
    assert {ord(c) for c in joined} == set(ENWIK8)


def test_text8_cut_90_5_5_by_characters(tmp_path, mirror):
    folder, url = mirror
    spec = _for_fixture("text8", folder / "text8.zip")
    assert spec.sources[0].algo == "sha1"  # the only digest published for text8.zip
    got = corpora.fetch_spec(spec, home=tmp_path, mirror=url)
    assert _split_bytes(got) == {"train": TEXT8[:900], "valid": TEXT8[900:950],
                                 "test": TEXT8[950:]}


def test_plain_file_corpus_returns_the_file_and_checks_it_again(tmp_path, mirror):
    folder, url = mirror
    spec = _for_fixture("tinyshakespeare", folder / "input.txt")
    got = corpora.fetch_spec(spec, home=tmp_path, mirror=url)
    assert got == tmp_path / "tinyshakespeare" / "input.txt"
    assert got.read_bytes() == (folder / "input.txt").read_bytes()
    got.write_text("edited\n")
    with pytest.raises(DataError, match="delete it"):
        corpora.fetch_spec(spec, home=tmp_path, mirror=url)


def test_checksum_mismatch_refused_and_nothing_kept(tmp_path, mirror):
    _, url = mirror  # the real published digest cannot match the fake archive
    with pytest.raises(DataError, match="not kept"):
        corpora.fetch("enwik8", home=tmp_path, mirror=url)
    assert list((tmp_path / "enwik8").iterdir()) == []


def test_offline_is_one_line_naming_where_to_put_the_archive(tmp_path, mirror):
    folder, _ = mirror
    spec = _for_fixture("wikitext-2", folder / "wikitext-2-v1.zip")
    with pytest.raises(DataError) as e:
        corpora.fetch_spec(spec, home=tmp_path, mirror=unreachable_url())
    msg = str(e.value)
    assert "\n" not in msg and "/wikitext-2-v1.zip" in msg and "JAX_RNNLM_DATA" in msg
    assert str(tmp_path / "wikitext-2") in msg
    assert list((tmp_path / "wikitext-2").iterdir()) == []


def test_mirror_from_the_environment(tmp_path, mirror, monkeypatch):
    folder, url = mirror
    monkeypatch.setenv("JAX_RNNLM_MIRROR", url + "/")
    spec = _for_fixture("text8", folder / "text8.zip")
    assert (corpora.fetch_spec(spec, home=tmp_path) / "test.txt").read_bytes() == TEXT8[950:]


def test_interrupted_preparation_is_redone_from_the_kept_archive(tmp_path, mirror):
    folder, url = mirror
    spec = _for_fixture("enwik8", folder / "enwik8.zip")
    got = corpora.fetch_spec(spec, home=tmp_path, mirror=url)
    expected = _split_bytes(got)
    # As if killed mid-way: no manifest, a renamed split and a half-written one.
    (got / corpora.MANIFEST).unlink()
    (got / "train.txt").write_bytes(b"stale")
    (got / "valid.txt").unlink()
    (got / "valid.txt.tmp").write_bytes(b"half")
    corpora.fetch_spec(spec, home=tmp_path, mirror=unreachable_url())
    assert _split_bytes(got) == expected and _leftovers(got) == []
    assert (got / corpora.MANIFEST).is_file()


def test_prepared_folder_reused_without_a_server(tmp_path, mirror):
    folder, url = mirror
    spec = _for_fixture("wikitext-2", folder / "wikitext-2-v1.zip")
    got = corpora.fetch_spec(spec, home=tmp_path, mirror=url)
    (got / "wikitext-2-v1.zip").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in got.iterdir()}
    assert corpora.fetch_spec(spec, home=tmp_path, mirror=unreachable_url()) == got
    assert {p.name: p.stat().st_mtime_ns for p in got.iterdir()} == stamps


def test_archive_put_in_place_by_hand_is_checked(tmp_path, mirror):
    folder, _ = mirror
    spec = _for_fixture("text8", folder / "text8.zip")
    (tmp_path / "text8").mkdir()
    _zip(tmp_path / "text8" / "text8.zip", {"text8": b"not the published text"})
    with pytest.raises(DataError, match="delete it"):
        corpora.fetch_spec(spec, home=tmp_path, mirror=unreachable_url())
    assert not (tmp_path / "text8" / "train.txt").exists()


@pytest.mark.parametrize("name, level", [("wikitext-2", "word"), ("enwik8", "char")])
def test_a_named_corpus_loads_through_data_at_its_own_level(tmp_path, mirror, monkeypatch,
                                                            name, level):
    """``--data wikitext-2`` end to end: fetched from the mirror into $JAX_RNNLM_DATA,
    split, and read at the corpus's level; the run records it by name."""
    from jax_rnnlm import data
    folder, url = mirror
    archive = folder / corpora.SPECS[name].sources[0].filename
    fixture = _for_fixture(name, archive)
    monkeypatch.setattr(corpora, "spec_of", lambda n: fixture if n == name else None)
    monkeypatch.setenv("JAX_RNNLM_DATA", str(tmp_path / "home"))
    monkeypatch.setenv("JAX_RNNLM_MIRROR", url)
    corpus = data.load_corpus(name, cache_dir=tmp_path / "ids")
    assert corpus.source == name and corpus.level == level
    assert set(corpus.identity) == {"train.txt", "valid.txt", "test.txt"}
    if level == "word":
        assert corpus.vocab.words[:3] == ("=", "Heading", "train")
        assert len(corpus.valid) == len(WIKI["valid"].decode().split()) + 3  # 3 lines, <eos>
    else:  # bytes: the alphabet of a byte-level model
        assert len(corpus.train) == 540 and all(len(w) == 1 for w in corpus.vocab.words)
