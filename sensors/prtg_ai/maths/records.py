"""A lightweight stand-in for ``dataclasses.dataclass`` on the script sensors' start-up path.

``import dataclasses`` pulls in ``inspect`` (and ``ast``, ``dis``, ``tokenize``...) on
every scan PRTG starts: more than the benchmark row "start-up: gpu (console script,
whole process)" leaves room for (benchmarks/bench_startup.py, target <= 1.3 of the bare
pynvml import). These records only need what the sensors use: fields from class
annotations in order, defaults and ``field(default_factory=...)``, ``__repr__``,
``__eq__`` and, with ``frozen=True``, immutability and hashing.
"""

from __future__ import annotations

_MISSING = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class _Factory:
    __slots__ = ("factory",)

    def __init__(self, factory):
        self.factory = factory


def field(*, default_factory):
    """A field whose default is made fresh for every instance (e.g. ``list``)."""
    return _Factory(default_factory)


def record(cls=None, *, frozen: bool = False):
    """Class decorator: ``__init__``/``__repr__``/``__eq__`` from the annotated fields."""

    def wrap(cls):
        names, defaults = _fields(cls)

        def __repr__(self):
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
            return f"{cls.__name__}({inner})"

        def __eq__(self, other):
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        cls.__init__ = _init(cls, names, defaults)
        cls.__repr__ = __repr__
        cls.__eq__ = __eq__
        cls.__record_fields__ = names
        if frozen:
            _freeze(cls, names)
        else:
            cls.__hash__ = None  # mutable and comparable by value: unhashable, as a dataclass
        return cls

    return wrap if cls is None else wrap(cls)


def _fields(cls) -> tuple[tuple[str, ...], dict]:
    """The field names of ``cls`` in order, and their defaults (factories leave the class)."""
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {}
    for name in names:
        if name in cls.__dict__:
            defaults[name] = cls.__dict__[name]
            if isinstance(defaults[name], _Factory):
                delattr(cls, name)
    return names, defaults


def _init(cls, names: tuple[str, ...], defaults: dict):
    """``__init__`` taking the fields by position or name; defaults fill the rest, fresh from factories."""

    def __init__(self, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} arguments, got {len(args)}")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names or key in values:
                raise TypeError(f"{cls.__name__}() got an unexpected or repeated argument {key!r}")
            values[key] = value
        for name in names:
            if name in values:
                value = values[name]
            else:
                default = defaults.get(name, _MISSING)
                if default is _MISSING:
                    raise TypeError(f"{cls.__name__}() missing argument {name!r}")
                value = default.factory() if isinstance(default, _Factory) else default
            object.__setattr__(self, name, value)

    return __init__


def _freeze(cls, names: tuple[str, ...]) -> None:
    """Make ``cls`` immutable, and hashable by its fields."""

    def __setattr__(self, name, value):
        raise FrozenInstanceError(f"cannot assign to field {name!r} of a frozen {cls.__name__}")

    def __delattr__(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r} of a frozen {cls.__name__}")

    def __hash__(self):
        return hash(tuple(getattr(self, n) for n in names))

    cls.__setattr__ = __setattr__
    cls.__delattr__ = __delattr__
    cls.__hash__ = __hash__
