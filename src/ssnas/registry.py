"""Name → builder tables: the extension points of ssnas (timm's ``register_model``, DARTS's ``OPS``).

Each extension point — search spaces, candidate operations, dataset formats, tasks — is one
:class:`Registry`. A new entry is one decorator in the new module's own file::

    from ssnas.space.base import register_space

    @register_space("dense", fused=FusedDenseNet)
    def build_dense(variant, num_classes, **overrides): ...

and the registry finds it by importing every module of its package (``packages``) the first time a name is
looked up, so adding one touches no other file. The config's allowed choices (``config.CHOICES``) are read
from the registries, never kept by hand.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ssnas.errors import UserError


@dataclass(frozen=True)
class Entry:
    """One registration: the builder and whatever the extension point keeps beside it (``meta``)."""
    name: str
    builder: Any
    meta: Dict[str, Any] = field(default_factory=dict)


class Registry:
    """A name → builder table, populated by importing the modules of ``packages`` on first use.

    ``what`` names the extension point in messages ("search space"); ``key`` is the config key whose
    choices the table defines ("model.space"), used to word a wrong name as a one-line UserError;
    ``default`` (the config key's default) is listed first, the others in registration order."""

    def __init__(self, what: str, packages: Tuple[str, ...] = (), key: Optional[str] = None,
                 default: Optional[str] = None):
        self.what, self.packages, self.key, self.default = what, tuple(packages), key, default
        self._entries: Dict[str, Entry] = {}
        self._populated, self._populating = not self.packages, False

    # ------------------------------------------------------------------ registering
    def register(self, name: str, builder: Any = None, **meta) -> Any:
        """``register("x", fn)`` or ``@register("x")`` (also on a class); returns the builder unchanged."""
        def add(obj):
            if name in self._entries and self._entries[name].builder is not obj:
                raise ValueError(f"{self.what} {name!r} is registered twice "
                                 f"({self._entries[name].builder!r} and {obj!r})")
            self._entries[name] = Entry(name, obj, dict(meta))
            return obj
        return add if builder is None else add(builder)

    def populate(self) -> None:
        """Import every module of the registry's packages once: their decorators fill the table."""
        if self._populated or self._populating:   # (a module being imported may look a name up)
            return
        self._populating = True
        try:
            for package in self.packages:
                pkg = importlib.import_module(package)
                for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
                    if not info.name.startswith("_"):
                        importlib.import_module(f"{package}.{info.name}")
            self._populated = True   # only once every module imported: a failure is raised again next time
        finally:
            self._populating = False

    # ------------------------------------------------------------------ looking up
    def names(self) -> List[str]:
        """Registered names: the default first, then in registration order."""
        self.populate()
        names = list(self._entries)
        if self.default in self._entries:
            names.remove(self.default)
            names.insert(0, self.default)
        return names

    def entry(self, name: str) -> Entry:
        self.populate()
        if name not in self._entries:
            where = f"{self.key}: " if self.key else ""
            raise UserError(f"{where}{name!r} is not a registered {self.what}, expected one of "
                            f"{', '.join(self.names())}")
        return self._entries[name]

    def get(self, name: str) -> Any:
        """The builder registered as ``name`` (a UserError naming the choices if there is none)."""
        return self.entry(name).builder

    def build(self, name: str, *args, **kwargs) -> Any:
        return self.get(name)(*args, **kwargs)

    def __contains__(self, name: object) -> bool:
        self.populate()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {self.names() if self._populated else '<not yet populated>'})"


class Choices(Sequence):
    """The allowed values of a config key, read from a registry when first needed (so loading a config does
    not import every space's torch code unless the key is checked). Behaves as the tuple of names."""

    def __init__(self, registry: Callable[[], Registry]):
        self._registry = registry

    def _names(self) -> tuple:
        return tuple(self._registry().names())

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self):
        return iter(self._names())

    def __repr__(self) -> str:
        return repr(self._names())
