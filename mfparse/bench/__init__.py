"""`mfparse bench`: one model under PyTorch (CPU/CUDA), ONNX Runtime and TensorRT, measured the
same way on each.

    >>> from mfparse import bench
    >>> report = bench.run("mfparse.bench.examples:cnn", batches=[1, 8], iterations=50)
    >>> print(bench.render_table(report))
    >>> bench.write_json(report, "cnn.json")

Importing this package imports neither torch, onnxruntime nor tensorrt; each runtime is
imported when its row runs, and a missing one is reported as unavailable with the reason.
How the numbers are taken: mfparse/bench/measure.py. The report's JSON: mfparse/bench/report.py.
"""

from mfparse.bench.base import BenchError, Unavailable
from mfparse.bench.core import run
from mfparse.bench.report import plot, render_table, to_json_obj, write_json

__all__ = ["run", "BenchError", "Unavailable", "render_table", "write_json", "to_json_obj", "plot"]
