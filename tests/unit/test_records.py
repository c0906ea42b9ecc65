"""maths.records: the dataclass stand-in the script sensors use (fields, defaults, frozen)."""

from __future__ import annotations

import pytest

from prtg_ai.maths.records import FrozenInstanceError, field, record


@record
class Sample:
    index: int
    name: str = "gpu"
    notes: list = field(default_factory=list)


@record(frozen=True)
class Key:
    host: str
    port: int = 443


def test_fields_by_position_and_name_with_defaults_and_fresh_factories():
    a, b = Sample(0), Sample(1, notes=["x"])
    assert (a.index, a.name, a.notes) == (0, "gpu", [])
    assert (b.index, b.name, b.notes) == (1, "gpu", ["x"])
    a.notes.append("y")
    assert Sample(2).notes == []  # a new list for every instance
    assert Sample.__record_fields__ == ("index", "name", "notes")
    assert "notes" not in Sample.__dict__  # the factory left the class


@pytest.mark.parametrize("make, message", [
    (lambda: Sample(), "Sample() missing argument 'index'"),
    (lambda: Sample(1, "a", [], 4), "Sample() takes 3 arguments, got 4"),
    (lambda: Sample(1, index=2), "Sample() got an unexpected or repeated argument 'index'"),
    (lambda: Sample(1, colour="red"), "Sample() got an unexpected or repeated argument 'colour'"),
])
def test_wrong_arguments_say_which(make, message):
    with pytest.raises(TypeError) as exc:
        make()
    assert str(exc.value) == message


def test_repr_and_equality_by_value():
    assert repr(Sample(3, "h100")) == "Sample(index=3, name='h100', notes=[])"
    assert Sample(3) == Sample(3) and Sample(3) != Sample(4)
    assert Sample(3).__eq__(Key("h")) is NotImplemented
    with pytest.raises(TypeError):
        hash(Sample(3))  # mutable: unhashable, as a dataclass


def test_frozen_records_refuse_changes_and_hash_by_fields():
    key = Key("node-1")
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'port' of a frozen Key"):
        key.port = 80
    with pytest.raises(FrozenInstanceError, match="cannot delete field 'host' of a frozen Key"):
        del key.host
    assert hash(key) == hash(("node-1", 443))
    assert {Key("a"), Key("a"), Key("b", 80)} == {Key("a"), Key("b", 80)}
