"""Text -> tokens: the special tokens, reading a text file whole or in chunks of whole
lines, and tokenising it. Errors name the file and, where it applies, the line and
byte offset.

Word level (PTB layout): tokens are whitespace-separated and every line ends
with ``<eos>``. Char level: every character, newlines included, is a token.
"""
from pathlib import Path

CHUNK_BYTES = 1 << 20  # 1 MiB of text: under 200k tokens (~15 MB of str objects) at once

# Special tokens, defined once. A task vocabulary (``Vocab.by_frequency``) puts them
# first, so their ids there are fixed: PAD_ID = 0 pads batches, BOS_ID/EOS_ID start
# and end decoded sequences. A language-model vocabulary holds only those its text has.
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
RESERVED = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(len(RESERVED))


class DataError(ValueError):
    """Bad corpus input; the message names the file and, where it applies, the line."""


def read_text(path):
    """The file's text; DataError if it is missing, empty or not UTF-8."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a text file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}: not UTF-8 text: byte 0x{raw[e.start]:02x} at byte "
                        f"offset {e.start} (line {line}); convert the file to UTF-8") from None


def tokenize(text, level):
    """Tokens of a text: words with <eos> per line, or characters."""
    if level == "char":
        return list(text)
    if level != "word":
        raise ValueError(f"level must be 'word' or 'char', got {level!r}")
    return [tok for line in text.splitlines() for tok in line.split() + [EOS]]


def text_chunks(path, chunk_bytes=CHUNK_BYTES):
    """Yield (line number of the chunk's first line, text) for chunks of whole lines.

    DataError (naming the file, byte offset and line) for a missing, empty or
    non-UTF-8 file. Chunks end after a newline byte, which never falls inside a
    UTF-8 sequence or between the two bytes of "\\r\\n"."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a text file")
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    offset, line, rest, blank = 0, 1, b"", True
    with f:
        while True:
            block = f.read(chunk_bytes)
            data = rest + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            piece, rest = data[:cut], data[cut:]
            if piece:
                try:
                    text = piece.decode("utf-8")
                except UnicodeDecodeError as e:
                    at = line + piece.count(b"\n", 0, e.start)
                    raise DataError(f"{path}: not UTF-8 text: byte 0x{piece[e.start]:02x} at "
                                    f"byte offset {offset + e.start} (line {at}); convert the "
                                    f"file to UTF-8") from None
                blank = blank and not text.strip()
                yield line, text
                offset, line = offset + len(piece), line + piece.count(b"\n")
            if not block:
                break
    if blank:
        raise DataError(f"{path}: file is empty")
