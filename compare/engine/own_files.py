"""The checker's own files, read before any engine runs, and what it imports served from them.

An engine's process may try to rewrite the checker on disk, so that the parent runs the
change when it imports a module later (the parent imports torch and its torch-side modules
while the engine is already probed). So before the engine's process starts, the parent
reads every file of its own packages (source, cached bytecode, the golden trace, the names
file) into memory; from then on its imports of those packages come from that copy, never
from disk; and when the verdict is made, `changed()` names any file that is not as it was.

    own = OwnFiles.read()        # before the engine's process starts; imports use it from now on
    ...
    own.changed()                # [] or the files that differ on disk now
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("compare", "microgpt_scalar", "microgpt_torch")
OWN_PACKAGES = ("compare", "microgpt_scalar")  # what the engine's process loads: the engine must leave them as they are
KINDS = (".py", ".json", ".txt")


class OwnFiles:
    def __init__(self, files: dict, stats: dict, bytecode: dict):
        self.files = files  # path -> bytes
        self.stats = stats  # source path -> {"mtime", "size"} when read
        self.bytecode = bytecode  # cached bytecode path -> bytes

    @classmethod
    def read(cls, root: Path = ROOT) -> "OwnFiles":
        """Read every file of the packages, and serve this process's imports of them from the copy."""
        files, stats, bytecode = {}, {}, {}
        for package in PACKAGES:
            for folder, dirs, names in os.walk(root / package):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for name in sorted(names):
                    if name.endswith(KINDS):
                        path = os.path.join(folder, name)
                        with open(path, "rb") as file:
                            info = os.fstat(file.fileno())
                            files[path] = file.read()
                        stats[path] = {"mtime": info.st_mtime, "size": info.st_size}
                        if name.endswith(".py"):
                            cached = importlib.util.cache_from_source(path)
                            try:
                                with open(cached, "rb") as file:
                                    bytecode[cached] = file.read()
                            except OSError:
                                pass
        own = cls(files, stats, bytecode)
        _Finder.serve(own, root)
        return own

    def changed(self) -> list:
        """The files (relative to the root) that differ from the copy, or are gone."""
        different = []
        for path, data in self.files.items():
            try:
                with open(path, "rb") as file:
                    same = hashlib.sha256(file.read()).digest() == hashlib.sha256(data).digest()
            except OSError:
                same = False
            if not same:
                different.append(os.path.relpath(path, ROOT))
        return different


class _Loader(importlib.machinery.SourceFileLoader):
    """A module of the packages from the copy: its source, or its bytecode when that was
    cached for exactly this source (as Python checks it: time and size)."""

    own: OwnFiles = None

    def get_data(self, path):
        data = self.own.files.get(path, self.own.bytecode.get(path))
        if data is None:
            raise OSError(f"not in the checker's copy of its files: {path}")
        return data

    def path_stats(self, path):
        return self.own.stats[path]

    def set_data(self, path, data, *, _mode=0o666):
        pass  # nothing is written


class _Finder:
    """First on sys.meta_path: the packages' modules come from the copy."""

    own: OwnFiles = None
    root: Path = ROOT

    @classmethod
    def serve(cls, own: OwnFiles, root: Path) -> None:
        cls.own, cls.root = own, root
        if cls not in sys.meta_path:
            sys.meta_path.insert(0, cls)

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        parts = fullname.split(".")
        if parts[0] not in PACKAGES or cls.own is None:
            return None
        base = os.path.join(str(cls.root), *parts)
        for file, package in ((os.path.join(base, "__init__.py"), True), (base + ".py", False)):
            if file in cls.own.files:
                loader = type("Loader", (_Loader,), {"own": cls.own})(fullname, file)
                return importlib.util.spec_from_file_location(
                    fullname, file, loader=loader, submodule_search_locations=[base] if package else None)
        return None

    @classmethod
    def invalidate_caches(cls):
        pass
