"""TFLite listing: mfparse vs the `tflite` package (flatbuffers' generated Python accessors).

    PYTHONPATH=. python benchmarks/bench_tflite.py

Files (built here with the flatbuffers Builder, cached in benchmarks/.data/):
  many.tflite   20,000 float32 constant tensors (common.many_specs()), data inside the flatbuffer;
  llama.tflite  the fp16 tensors of common.llama_specs() (2.7 GB): too big for a flatbuffer's
                32-bit offsets, so the data follow it and Buffer.offset/size point at them, as
                the TFLite converter writes models over 2 GB.
Both readers list every tensor with its name, shape, type, data size and quantization scales;
the tflite package reads from a memory map of the file (no copy), as mfparse does.
"""

from __future__ import annotations

import mmap
import os
import sys

import numpy as np

from common import cached, fill, llama_specs, machine, many_specs, table, timeit, versions, write_section

import mfparse

F32, F16 = 0, 1


def _vec_i32(b, vals):
    b.StartVector(4, len(vals), 4)
    for v in reversed(vals):
        b.PrependInt32(v)
    return b.EndVector()


def _vec_off(b, offs):
    b.StartVector(4, len(offs), 4)
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def build(specs, ttype, data_for, external_start=None):
    """A one-subgraph model; data_for(i) -> bytes (inline) or its size (external)."""
    import flatbuffers

    b = flatbuffers.Builder(1 << 20)
    bufs = []
    pos = external_start
    b.StartObject(3)
    bufs.append(b.EndObject())  # buffer 0: the empty sentinel
    for i in range(len(specs)):
        d = data_for(i)
        if external_start is None:
            vec = b.CreateNumpyVector(np.frombuffer(d, np.uint8))
            b.StartObject(3)
            b.PrependUOffsetTRelativeSlot(0, vec, 0)
        else:
            b.StartObject(3)
            b.PrependUint64Slot(1, pos, 0)
            b.PrependUint64Slot(2, d, 0)
            pos += d
        bufs.append(b.EndObject())
    tensors = []
    for i, (name, shape) in enumerate(specs):
        n = b.CreateString(name)
        s = _vec_i32(b, list(shape))
        b.StartObject(6)
        b.PrependUOffsetTRelativeSlot(0, s, 0)
        b.PrependUint8Slot(1, ttype, 0)
        b.PrependUint32Slot(2, i + 1, 0)
        b.PrependUOffsetTRelativeSlot(3, n, 0)
        tensors.append(b.EndObject())
    tv = _vec_off(b, tensors)
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(0, tv, 0)
    sg = b.EndObject()
    sgv, bv = _vec_off(b, [sg]), _vec_off(b, bufs)
    desc = b.CreateString("mfparse benchmark")
    b.StartObject(5)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(2, sgv, 0)
    b.PrependUOffsetTRelativeSlot(3, desc, 0)
    b.PrependUOffsetTRelativeSlot(4, bv, 0)
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    return bytes(b.Output())


def make_many(path):
    specs = many_specs()
    data = build(specs, F32, lambda i: fill(specs[i][1], np.float32, i).tobytes())
    with open(str(path) + ".tmp", "wb") as f:
        f.write(data)
    os.replace(str(path) + ".tmp", path)


def make_llama(path):
    specs = llama_specs()
    sizes = [int(np.prod(s)) * 2 for _, s in specs]
    probe = build(specs, F16, lambda i: sizes[i], external_start=1 << 40)
    start = (len(probe) + 63) // 64 * 64
    fb = build(specs, F16, lambda i: sizes[i], external_start=start)
    assert len(fb) == len(probe)
    with open(str(path) + ".tmp", "wb") as f:
        f.write(fb + b"\0" * (start - len(fb)))
        for i, (_, shape) in enumerate(specs):
            f.write(fill(shape, np.float16, i).tobytes())
    os.replace(str(path) + ".tmp", path)


def list_tflite_package(path):
    import tflite

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        model = tflite.Model.GetRootAsModel(mm, 0)
        out = []
        for si in range(model.SubgraphsLength()):
            sg = model.Subgraphs(si)
            for ti in range(sg.TensorsLength()):
                t = sg.Tensors(ti)
                buf = model.Buffers(t.Buffer())
                size = buf.DataLength() or buf.Size()
                if size == 0:
                    continue
                q = t.Quantization()
                scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
                out.append((t.Name().decode(), tuple(t.ShapeAsNumpy().tolist()), t.Type(), size, scales))
        return out


def list_mfparse(path):
    with mfparse.open(path) as m:
        return [(t.name, t.shape, t.dtype, t.nbytes, t.extras.get("quantization")) for t in m.tensors()]


def main():
    rows = []
    for label, name, make in (("many", "many.tflite", make_many), ("llama", "llama.tflite", make_llama)):
        path = cached(name)
        if not path.exists():
            make(path)
        a, b = list_tflite_package(path), list_mfparse(path)
        assert [(x[0], x[1], x[3]) for x in a] == [(x[0], x[1], x[3]) for x in b], "readers disagree"
        t_ref = timeit(lambda: list_tflite_package(path), repeat=5)
        t_mf = timeit(lambda: list_mfparse(path), repeat=15)
        rows.append([f"{name} ({len(b):,} tensors, {path.stat().st_size / 1e6:,.0f} MB)", f"{t_ref * 1000:.1f}",
                     f"{t_mf * 1000:.2f}", f"{t_ref / t_mf:.0f}x"])
    body = (
        "Command: `PYTHONPATH=. python benchmarks/bench_tflite.py`\n\n"
        "Median wall time of listing every tensor that carries data (name, shape, type, bytes, quantization), "
        "warm page cache, one process. llama.tflite keeps its 2.7 GB of data after the flatbuffer "
        "(Buffer.offset/size), the layout of TFLite models over 2 GB. No goal was set for this comparison.\n\n"
        + table(rows, ["file", "tflite package ms", "mfparse ms", "speed-up"])
        + f"\n\nMachine: {machine()} (load average {os.getloadavg()[0]:.1f} at the end: the machine is shared);"
        f" versions: {versions('numpy', 'tflite', 'flatbuffers')}\n"
    )
    print(body)
    write_section("TFLite listing vs the tflite package", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
