"""figspec, by its documented name: ``import figspec``.

The package lives in ``compiler/`` (the repository's layout); ``figspec`` and
``figspec.X`` are that package and its modules under the name users type,
the very same module objects, so ``except figspec.FigspecError`` catches
what ``compiler`` raises and no module is loaded twice.
"""

import importlib
import importlib.abc
import importlib.util
import sys

import compiler


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``figspec.X`` is ``compiler.X``."""

    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name.startswith(__name__ + "."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return importlib.import_module("compiler" + spec.name[len(__name__):])

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        pass  # already executed, as compiler.X


sys.meta_path.insert(0, _Alias())
sys.modules[__name__] = compiler
