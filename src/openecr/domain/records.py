"""A faster constructor for the frozen records made on every request.

A frozen dataclass's generated ``__init__`` sets each field with ``object.__setattr__(self,
name, value)``, a lookup by name per field: a 13-field record takes about 1.2 µs to build on
this project's machines, an unfrozen one 0.15 µs. :func:`quick_init` keeps the record frozen
(and its equality, hash, repr, slots) and replaces only ``__init__`` by one that sets each slot
through its member descriptor, which takes about half the time.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_FACTORY = object()  # the default of a field built by its default_factory


def quick_init(cls: type[T]) -> type[T]:
    """Give ``cls``, a ``@dataclass(frozen=True, slots=True)``, the faster ``__init__`` (same
    signature, defaults and default factories). Apply it above ``@dataclass``. Classes with
    ``__post_init__``, ``InitVar`` or keyword-only fields are refused (TypeError)."""
    params = dataclasses.fields(cls)  # type: ignore[arg-type]
    options: Any = cls.__dict__.get("__dataclass_params__")
    if options is None or not options.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    signature: list[str] = []
    body: list[str] = []
    for field in params:
        name = field.name
        if field.kw_only or not field.init:
            raise TypeError(f"{cls.__name__}.{name}: keyword-only or init=False")
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__  # the slot's member descriptor
        if field.default is not dataclasses.MISSING:
            namespace[f"_default_{name}"] = field.default
            signature.append(f"{name}=_default_{name}")
        elif field.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{name}"] = field.default_factory
            signature.append(f"{name}=_FACTORY")
            body.append(f"    if {name} is _FACTORY: {name} = _factory_{name}()")
        else:
            signature.append(name)
        body.append(f"    _set_{name}(self, {name})")
    source = f"def __init__(self, {', '.join(signature)}):\n" + "\n".join(body or ["    pass"])
    exec(source, namespace)  # as dataclasses itself builds __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    setattr(cls, "__init__", init)  # noqa: B010
    return cls
