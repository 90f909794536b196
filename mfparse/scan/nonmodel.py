"""Files of a model repository that are not model files: text (tokenizer vocabularies, merges,
licences, READMEs, JSON/YAML configs, Python sources), images, sentencepiece models.

`mfparse scan` on a folder meets them next to the weights. When a file is not a pickle (the
interpreter found no import in it and no pickle ended) and is one of these, it gets a note,
never an error: nothing in it would be unpickled. Decided by content first (UTF-8 text without
control bytes; an image's magic number), by name only where the content has no magic (a
sentencepiece `.model` is a bare protobuf message). A JSON file that does not parse is a note
about a JSON file. Formats mfparse reads (safetensors, GGUF, zip, HDF5, ...) never come here:
their checkers run first, so a damaged .safetensors is still an error.
"""

from __future__ import annotations

import os

from mfparse._lazy import LazyModule, LazyPattern
from mfparse.scan import keras as keras_check

json = LazyModule("json")  # imported on first use: only JSON files need it

#: file names (lower case) that hold a pickle for some loader: a text-looking file with one of
#: these names that fails to parse as a pickle stays an error
PICKLE_LIKE = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".joblib", ".pck", ".pcl", ".npy", ".npz",
               ".dat", ".data", ".model.bin", ".sav", ".h5", ".hdf5", ".keras", ".safetensors", ".gguf", ".onnx",
               ".tflite", ".pb")
#: extensions of text files in model repositories
TEXT_EXTENSIONS = (".py", ".pyw", ".txt", ".md", ".rst", ".json", ".jsonl", ".ndjson", ".yaml", ".yml", ".toml",
                   ".cfg", ".ini", ".csv", ".tsv", ".gitkeep", ".keep", ".gitignore", ".gitattributes", ".typed",
                   ".jinja", ".j2", ".html", ".xml", ".sh", ".ipynb")
#: names of text files without an extension (lower case; "license-apache" and "readme.*" too)
TEXT_NAMES = ("license", "licence", "notice", "readme", "copying", "authors", "contributors", "codeowners",
              "citation", "changelog", "use_policy", "makefile", "dockerfile", "requirements")
#: below this many bytes, content alone does not make a file text (a cut "PK" or "BZh91AY&SY"
#: is a damaged archive, not a note): the name must say text too
MIN_TEXT = 16

_CONTROL = LazyPattern(b"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_TEXT_SAMPLE = 1 << 16

_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"%PDF-", "PDF document"),
)


def is_text(buf) -> bool:
    """UTF-8 (a BOM allowed) without control bytes other than tab, newline, vertical tab, form
    feed and carriage return, judged on the first 64 KiB (a character cut by that window is
    fine)."""
    if len(buf) == 0:
        return False
    sample = bytes(buf[:_TEXT_SAMPLE])
    if _CONTROL.search(sample):
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(sample) - 3 and len(buf) > len(sample)
    return True


def _lname(name) -> str:
    return os.path.basename(name or "").lower()


def pickle_like_name(name) -> bool:
    return _lname(name).endswith(PICKLE_LIKE)


def text_name(name) -> bool:
    """True for names of text files: LICENSE, README.md, vocab.txt, __init__.py, .gitattributes."""
    n = _lname(name)
    return n.endswith(TEXT_EXTENSIONS) or n.split(".")[0].split("-")[0] in TEXT_NAMES


def empty_ok(name) -> bool:
    """True for names of files that ordinary repositories hold empty (__init__.py, .gitkeep)."""
    return text_name(name)


def _image(head: bytes) -> str | None:
    for magic, what in _IMAGES:
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP image"
    return None


def _protobuf_message(buf, limit: int = 1 << 22) -> bool:
    """True when buf is a sequence of well-formed protobuf fields to its last byte (top level
    only: wire types 0, 1, 2, 5, field numbers > 0, every length inside the buffer). At most
    `limit` fields are looked at (a sentencepiece model has one per vocabulary piece)."""
    n = len(buf)
    pos = 0
    fields = 0
    b = buf

    def varint(p):
        shift = 0
        v = 0
        while p < n and shift < 64:
            c = b[p]
            p += 1
            v |= (c & 0x7F) << shift
            if c < 0x80:
                return v, p
            shift += 7
        return None, p

    while pos < n:
        key, pos = varint(pos)
        if key is None or key >> 3 == 0:
            return False
        wt = key & 7
        if wt == 0:
            v, pos = varint(pos)
            if v is None:
                return False
        elif wt == 1:
            pos += 8
        elif wt == 5:
            pos += 4
        elif wt == 2:
            ln, pos = varint(pos)
            if ln is None:
                return False
            pos += ln
        else:
            return False
        if pos > n:
            return False
        fields += 1
        if fields >= limit:
            return True
    return fields > 0


def check(ctx, buf, where, name, few: bool) -> bool:
    """Add a note for a top-level file that is not a model file and return True; False when the
    bytes are none of these (the caller reports an error). `few`: the pickle interpreter ran at
    most one opcode before failing (the bytes are not a pickle that broke part-way)."""
    lname = _lname(name)
    if is_text(buf) and (len(buf) >= MIN_TEXT or text_name(name)):
        if not few and pickle_like_name(name):
            return False  # a text-looking pickle (protocol 0) that breaks: an error for its loader
        _text_note(ctx, buf, where, lname)
        return True
    head = bytes(buf[:16])
    what = _image(head)
    if what is not None:
        ctx.note(f"{what}: not a model format; nothing in it would be unpickled")
        return True
    if lname.endswith(".model") and _protobuf_message(buf):
        ctx.note("protobuf message (a sentencepiece tokenizer model, by its name): not a pickle; nothing in it "
                 "would be unpickled")
        return True
    return False


def _text_note(ctx, buf, where, lname: str) -> None:
    if lname.endswith((".json", ".jsonl", ".ndjson")) or keras_check.looks_like_json(buf):
        try:
            obj = json.loads(bytes(buf).decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            if lname.endswith(".json"):
                ctx.note(f"JSON file that does not parse ({type(e).__name__}): no JSON loader reads it; nothing "
                         "in it would be unpickled")
                return
            obj = None
        if obj is not None:
            ctx.note("JSON file: not a pickle and not a model format; nothing in it would be unpickled")
            return
    if lname.endswith((".py", ".pyw")):
        ctx.note("Python source file: not a pickle; it runs only if imported (e.g. as remote code)")
        return
    ctx.note("text file: not a pickle and not a model format; nothing in it would be unpickled")
