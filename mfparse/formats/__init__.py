"""Format detection and the registry of readers (one module per format).

`open_reader(source, format)` looks at the magic bytes (and, for zip archives, at the member
names) and returns a Reader. A format module exposes what the registry below calls; adding a
format means adding a module and a line here.
"""

from __future__ import annotations

from mfparse.errors import UnsupportedFormatError

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _zip_reader(source):
    """A zip archive: decide by its members what it is."""
    from mfparse.formats import torch as torch_fmt
    from mfparse.formats.zip import ZipArchive

    archive = ZipArchive(source)
    if torch_fmt.find_archive_prefix(archive) is not None:
        return torch_fmt.open_zip(source, archive)
    from mfparse.formats import keras

    if keras.is_keras_zip(archive):
        return keras.open_zip(source, archive)
    names = archive.names()
    from mfparse.formats import npy

    if npy.is_npz(names):
        return npy.open_npz(source, archive)
    raise UnsupportedFormatError(
        "zip archive that is not a torch checkpoint (members: "
        + ", ".join(names[:5])
        + (", ..." if len(names) > 5 else "")
        + ")"
    )


def _openers():
    from mfparse.formats import gguf, keras, npy, onnx, safetensors, tf, tflite, torch

    return {
        "torch-zip": torch.open_zip,
        "torchscript": torch.open_zip,
        "torch-legacy": torch.open_legacy,
        "safetensors": safetensors.open_reader,
        "tflite": tflite.open_reader,
        "gguf": gguf.open_reader,
        "npy": npy.open_npy,
        "npz": npy.open_npz,
        "hdf5": keras.open_hdf5,
        "keras": keras.open_reader,
        "onnx": onnx.open_reader,
        "onnx-tensor": onnx.open_tensor,
        "tf-savedmodel": tf.open_saved_model,
        "tf-graphdef": tf.open_graphdef,
        "tf-checkpoint": tf.open_checkpoint,
    }


FORMATS = ("torch-zip", "torchscript", "torch-legacy", "safetensors", "tflite", "gguf", "npy", "npz", "hdf5",
           "keras", "onnx", "onnx-tensor", "tf-savedmodel", "tf-graphdef", "tf-checkpoint")


def zip_at_end(source) -> bool:
    """True when the file ends with a zip end-of-central-directory record (its comment, if any,
    reaching the last byte): what zipfile.is_zipfile looks for."""
    size = source.size
    if size < 22:
        return False
    from mfparse.errors import MFParseError
    from mfparse.formats.zip import find_eocd

    try:
        eocd = find_eocd(source)
    except MFParseError:
        return False
    return eocd is not None and not eocd[6] & (1 << 7)  # a record followed by stray bytes does not count


def detect(source) -> str:
    """The format name of a source, decided as the loaders decide.

    A magic number at a fixed place at the start wins over an archive appended at the end:
    torch.load and numpy.load take a file for a zip only when it starts with a local header
    ("PK\x03\x04"), the TFLite interpreter takes a model by its identifier at byte 4 whatever
    follows it (TFLite Model Metadata appends the model's associated files as a zip), and
    safetensors, GGUF, .npy and HDF5 files are known by their first bytes; ONNX and TensorFlow
    protobufs by their name and first records. Only a file whose start is none of these is a
    zip by its end record (zipfile reads bytes prepended to an archive, as in a
    self-extracting one), and then an HDF5 file behind a user block. A file that two loaders
    read as two formats is a polyglot: `mfparse scan` reports it.
    """
    from mfparse.formats import hdf5, safetensors, torch
    from mfparse.formats.base import read_at

    head = bytes(read_at(source, 0, 64))
    if head[:4] in ZIP_MAGICS:
        return "zip"
    if torch.is_legacy(head):
        return "torch-legacy"
    if safetensors.probe(head, source.size):
        return "safetensors"
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[4:8] == b"TFL3":
        return "tflite"
    if hdf5.probe(head):
        return "hdf5"
    from mfparse.formats import onnx, tf

    found = onnx.probe(source, head) or tf.probe(source, head)
    if found:
        return found
    if zip_at_end(source):
        return "zip"
    if source.size > 512 and hdf5.find_superblock_in(source) is not None:
        return "hdf5"  # behind a user block (MATLAB v7.3): signature at 512, 1024, 2048, ...
    raise UnsupportedFormatError(
        f"unrecognised file format (first bytes {head[:8].hex(' ')})" if head else "empty file", 0
    )


def resolve_path(obj, format: str | None = None):
    """What to open for a path whose format lives in a folder or behind a prefix (a SavedModel
    folder, a checkpoint folder or prefix); anything else is returned unchanged."""
    from mfparse.formats import tf

    return tf.resolve_path(obj, format)


def open_reader(source, format: str | None = None):
    """A Reader for the source, of the given or the detected format."""
    if format is None:
        format = detect(source)
        if format == "zip":
            return _zip_reader(source)
    openers = _openers()
    if format not in openers:
        raise UnsupportedFormatError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    return openers[format](source)
