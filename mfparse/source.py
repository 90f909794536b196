"""Compatibility name: the local byte source lives in mfparse/io/local.py."""

from mfparse.io.local import LocalSource as Source

__all__ = ["Source"]
