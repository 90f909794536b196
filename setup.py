"""Build the C core (csrc/*.c) and its Cython binding into mfparse._native."""

import glob
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
os.chdir(HERE)

extra_compile_args = []
extra_link_args = []
if sys.platform != "win32":
    # -fvisibility=hidden: the extension exports only PyInit__native (CPython marks it visible);
    # the C core's mf_* functions and Cython's helpers stay private to the .so
    extra_compile_args = ["-std=c99", "-O2", "-Wall", "-Wno-unused-function", "-fvisibility=hidden"]
    # MFPARSE_SANITIZE=1 builds the extension with ASan + UBSan (make test-asan)
    if os.environ.get("MFPARSE_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
               "-g", "-O1"]
        extra_compile_args += san
        extra_link_args += san

ext = Extension(
    "mfparse._native",
    sources=["mfparse/_native.pyx"] + sorted(glob.glob("csrc/*.c")),
    include_dirs=["csrc"],
    extra_compile_args=extra_compile_args,
    extra_link_args=extra_link_args,
)

setup(
    ext_modules=cythonize(
        [ext],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
        include_path=["mfparse"],
    ),
)
