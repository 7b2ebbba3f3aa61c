"""Write pickles that name another library's classes without importing that library.

Test files must look like the real ones (HaMeR's checkpoint pickles yacs ``CfgNode`` objects,
MANO's pickle holds chumpy ``Ch`` objects), but neither library is a dependency. ``pickle``
records a class by its module and name and checks that the module resolves to it, so the
module is registered in ``sys.modules`` for the duration of the write only.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator


@contextlib.contextmanager
def pickled_under(module_name: str, **classes: type) -> Iterator[None]:
    """Make ``classes`` pickle as ``module_name.<name>`` inside the ``with`` block."""
    parts = module_name.split(".")
    names = [".".join(parts[: i + 1]) for i in range(len(parts))]
    saved = {name: sys.modules.get(name) for name in names}
    modules = {name: types.ModuleType(name) for name in names}
    for parent, child in zip(names, names[1:]):
        setattr(modules[parent], child.rsplit(".", 1)[1], modules[child])
    for name, cls in classes.items():
        cls.__module__, cls.__qualname__ = module_name, name
        setattr(modules[module_name], name, cls)
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
