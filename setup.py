"""Builds the libx265 binding (a small C extension compiled against the installed x265.h).

Compiling against the system header, rather than binding struct offsets with ctypes, keeps the
binding right for whatever x265 build the machine has; the extension checks the API build at run
time and the Python side refuses builds it was not tested with.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dmic_core.codecs._x265",
            sources=["dmic_core/codecs/_x265module.c"],
            libraries=["x265"],
            extra_compile_args=["-O2", "-std=c99", "-Wall"],
        )
    ]
)
