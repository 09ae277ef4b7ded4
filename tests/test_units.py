"""featvis.units: the one parser of "layer:channel@x,y" and of channel SPECs."""
import pytest

from featvis.errors import UsageError
from featvis.units import ChannelSpec, Unit, parse_channels


@pytest.mark.parametrize("text, unit", [
    ("mixed4a:476", Unit("mixed4a", 476)),
    (" layer3.1:7@2,5 ", Unit("layer3.1", 7, 2, 5)),
    ("layer1.0.relu#2:3", Unit("layer1.0.relu#2", 3)),
    (("layer3", 4), Unit("layer3", 4)),
])
def test_unit_parse(text, unit):
    assert Unit.parse(text) == unit
    assert Unit.parse(str(unit)) == unit


def test_unit_str_round_trip():
    assert str(Unit("mixed4a", 476, 7, 3)) == "mixed4a:476@7,3"
    assert str(Unit("mixed4a", 476)) == "mixed4a:476"
    assert Unit.parse("a:1@2,3").is_neuron and not Unit.parse("a:1").is_neuron


@pytest.mark.parametrize("bad", ["mixed4a", "mixed4a:", ":3", "a:b", "a:1@2", "a:1@-1,2", "a:1:2", "a:-1", ""])
def test_unit_parse_rejects(bad):
    with pytest.raises(UsageError, match="layer:channel"):
        Unit.parse(bad)


def test_unit_needs_both_coordinates():
    with pytest.raises(UsageError, match="both x and y"):
        Unit("a", 1, x=3)


def test_unit_is_frozen():
    with pytest.raises(Exception):
        Unit("a", 1).channel = 2


@pytest.mark.parametrize("spec, count, expected", [
    ("all", 4, [0, 1, 2, 3]),
    ("0:3", 10, [0, 1, 2]),
    ("3,1,3", 10, [1, 3]),
    ("0:2,8", 10, [0, 1, 8]),
    ("7:", 10, [7, 8, 9]),
    (":2", 10, [0, 1]),
    ("0:3", None, [0, 1, 2]),
    ("all", None, []),
    ("7:", None, []),
])
def test_channel_spec(spec, count, expected):
    assert parse_channels(spec, count) == expected


@pytest.mark.parametrize("spec", ["0:50000000", "49999999", "0:8,50000000", "600:"])
def test_huge_spec_fails_fast(spec, monkeypatch):
    import builtins
    real_range = builtins.range

    def no_big_range(*args):  # nothing may be expanded before the bounds are checked
        r = real_range(*args)
        assert len(r) < 10_000, f"range{args} expanded"
        return r
    monkeypatch.setattr(builtins, "range", no_big_range)
    with pytest.raises(UsageError, match="out of range: the layer has 508 channels"):
        parse_channels(spec, 508)


def test_out_of_range_names_first_bad_channel():
    with pytest.raises(UsageError, match="channel 10 is out of range"):
        parse_channels("0:4,10,12", 10)
    with pytest.raises(UsageError, match="channel 10 is out of range"):
        parse_channels("5:20", 10)


@pytest.mark.parametrize("bad", ["x", "1-3", "3:1", "4:4", "1,,2", "-1"])
def test_channel_spec_rejects(bad):
    with pytest.raises(UsageError, match="bad channel spec"):
        ChannelSpec.parse(bad)


def test_units_module_is_light():
    """featvis.units may be imported by anything: it imports neither torch nor other featvis modules
    (apart from featvis.errors)."""
    import ast

    import featvis.units as u
    tree = ast.parse(open(u.__file__).read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {("." * n.level) + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert names <= {"re", "__future__", "dataclasses", "typing", ".errors"}, names


def test_old_import_paths_still_work():
    from featvis.units import SPEC_HELP as a
    from featvis.units import SPEC_HELP as b
    from featvis.units import parse_channels as p
    assert a == b and p is parse_channels
