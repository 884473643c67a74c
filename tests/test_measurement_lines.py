"""Measurement JSON lines back into measurements (`cuas_node.measurement_lines`), on its own:
the round trip with the wire module, every way a line can be malformed, agreement with the
published schema, and Hypothesis properties (random lines never raise)."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cuas_node.kernel.measurement import GpsFix, RadarDetection, RemoteIdReport, RfPresence
from cuas_node.measurement_lines import (
    INVALID,
    MEASUREMENT_KINDS,
    MISSING,
    NON_FINITE,
    NOT_JSON,
    NOT_OBJECT,
    UNKNOWN_FIELD,
    WRONG_TYPE,
    Rejected,
    UnknownKind,
    parse_line,
)
from cuas_node.publish import wire
from cuas_node.replay import GOLDEN_DIR
from tests.conftest import SCHEMA_DIR

RADAR = RadarDetection(
    "radar-1", 1_700_000_000.25, 0.25, 120.0, 0.1, 0.05, -3.5, 0.3, 0.02, 0.03, 0.05, 14.0, 3, 0.8
)
GPS = GpsFix("gps", 1_700_000_000.0, 0.1, 52.0, 4.0, 10.0, 47.0, 1, 9, 0.9)
RID = RemoteIdReport(
    "rid", 1_700_000_000.5, 0.5, "SER123", lat=52.001, lon=4.002, vel_enu_mps=(1.0, 2.0, 0.5)
)
RF = RfPresence("fpv", 1_700_000_001.0, 1.0, "R", 7, 5917.0, -60.0, 20.0, aliases=("F8",))
SCHEMA = json.loads((SCHEMA_DIR / "measurement.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def line(m: Any, **changes: Any) -> str:
    record = wire.measurement_record(m)
    for key, value in changes.items():
        if value is dataclasses.MISSING:
            record.pop(key)
        else:
            record[key] = value
    return json.dumps(record)


@pytest.mark.parametrize("m", [RADAR, GPS, RID, RF], ids=lambda m: type(m).__name__)
def test_round_trip_with_the_wire_module(m: Any) -> None:
    text = wire.dumps(wire.measurement_record(m))
    assert parse_line(text) == m
    assert parse_line(text.encode()) == m  # bytes, as read from a file
    VALIDATOR.validate(json.loads(text))


def test_every_golden_measurement_line_round_trips_exactly() -> None:
    """The checked-in replay outputs: each measurement line parses into the measurement that prints
    it again byte for byte (floats survive JSON exactly); other lines are not measurements."""
    count = 0
    for path in sorted(GOLDEN_DIR.glob("*.expected.jsonl")):
        for text in path.read_text().splitlines():
            parsed = parse_line(text)
            if json.loads(text)["type"] == "measurement":
                assert not isinstance(parsed, (Rejected, UnknownKind)) and parsed is not None, (text, parsed)
                assert wire.dumps(wire.measurement_record(parsed)) == text
                count += 1
            else:
                assert parsed is None
    assert count > 500


def test_other_lines_are_ignored_and_unknown_kinds_named() -> None:
    assert parse_line("") is None
    assert parse_line("   \n") is None
    assert parse_line(b"\n") is None
    assert parse_line('{"type":"tracks","tracks":[]}') is None
    assert parse_line('{"type":"alert"}') is None
    assert parse_line('{"type":"measurement","kind":"LidarPoint","x":1}') == UnknownKind("LidarPoint")


def test_defaults_and_nullable_fields_may_be_absent() -> None:
    """A field with a default may be left out; so may a nullable one without (it is then null):
    a radar without range-rate sends neither `radial_mps` nor its sigma."""
    m = parse_line(
        line(RADAR, radial_mps=dataclasses.MISSING, sigma_radial_mps=None, n_points=dataclasses.MISSING)
    )
    assert isinstance(m, RadarDetection)
    assert m.radial_mps is None and m.sigma_radial_mps is None and m.n_points == 1
    assert parse_line(
        line(GPS, alt_msl_m=dataclasses.MISSING, hdop=dataclasses.MISSING)
    ) == dataclasses.replace(GPS, alt_msl_m=None, hdop=None)
    assert parse_line(line(RF, aliases=dataclasses.MISSING)) == dataclasses.replace(RF, aliases=())


def test_numbers_are_converted_as_json_has_them() -> None:
    m = parse_line(line(RADAR, range_m=120, n_points=3.0))  # an integer for a float, 3.0 for an int
    assert isinstance(m, RadarDetection) and type(m.range_m) is float and type(m.n_points) is int
    assert m == RADAR
    rid = parse_line(line(RID, vel_enu_mps=[1, 2, 0.5]))
    assert isinstance(rid, RemoteIdReport) and rid.vel_enu_mps == (1.0, 2.0, 0.5)


@pytest.mark.parametrize(
    ("text", "reason", "detail"),
    [
        ("{", NOT_JSON, ""),
        ('{"type":"measurement"\n"kind":1}', NOT_JSON, "delimiter at character 23"),  # not "line 2"
        ("not json at all", NOT_JSON, ""),
        ("\xff\xfe", NOT_JSON, ""),
        ("[" * 100_000, NOT_JSON, ""),
        ("[1, 2]", NOT_OBJECT, "array"),
        ('"measurement"', NOT_OBJECT, "string"),
        ('{"kind":"RadarDetection"}', MISSING, "type"),
        ('{"type":7}', WRONG_TYPE, "type"),
        ('{"type":"measurement"}', MISSING, "kind"),
        ('{"type":"measurement","kind":null}', WRONG_TYPE, "kind"),
        (line(RADAR, range_m=dataclasses.MISSING), MISSING, "range_m"),
        (line(RADAR, range_m=dataclasses.MISSING, rng=1.0), MISSING, "range_m (unknown field: rng)"),
        (line(RADAR, sensor_id=dataclasses.MISSING), MISSING, "sensor_id"),
        (line(RADAR, range_m="120"), WRONG_TYPE, "range_m"),
        (line(RADAR, range_m=True), WRONG_TYPE, "range_m"),
        (line(RADAR, range_m=None), WRONG_TYPE, "range_m"),
        (line(RADAR, sensor_id=5), WRONG_TYPE, "sensor_id"),
        (line(RADAR, n_points=2.5), WRONG_TYPE, "n_points"),
        (line(RADAR, n_points=True), WRONG_TYPE, "n_points"),
        (line(RADAR, t_capture=10**400), NON_FINITE, "t_capture"),
        (line(RADAR, sigma_range_m=0.0), INVALID, "sigma_range_m"),
        (line(RADAR, sigma_az_rad=-0.1), INVALID, "sigma_az_rad"),
        (line(RADAR, rng=1.0), UNKNOWN_FIELD, "rng"),
        (line(RID, vel_enu_mps=[1.0, 2.0]), WRONG_TYPE, "vel_enu_mps"),
        (line(RID, vel_enu_mps=[1.0, 2.0, "up"]), WRONG_TYPE, "vel_enu_mps[2]"),
        (line(RID, vel_enu_mps={"e": 1}), WRONG_TYPE, "vel_enu_mps"),
        (line(RF, aliases=["F8", 8]), WRONG_TYPE, "aliases[1]"),
    ],
)
def test_malformed_lines_say_why(text: str, reason: str, detail: str) -> None:
    result = parse_line(text)
    assert isinstance(result, Rejected), result
    assert result.reason == reason
    assert detail in result.detail
    assert str(result).startswith(reason)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_non_finite_numbers_are_refused(literal: str) -> None:
    """Python's json reads NaN/Infinity (not JSON) and overflows 1e400 to inf: all refused."""
    text = (
        line(RADAR)
        .replace('"range_m":120.0', f'"range_m":{literal}')
        .replace('"range_m": 120.0', f'"range_m": {literal}')
    )
    assert literal in text
    result = parse_line(text)
    assert isinstance(result, Rejected) and result.reason == NON_FINITE and "range_m" in result.detail


@pytest.mark.parametrize("literal", ["NaN", "Infinity"])
def test_a_non_finite_radial_speed_is_not_measured(literal: str) -> None:
    """A radar without range-rate written by Python's json (`float("nan")` -> NaN): in a field
    that may be null, the detection is kept without range-rate, as fusion takes a NaN radial from
    a driver; a required field stays refused (above)."""
    text = line(RADAR, radial_mps=float("nan"), sigma_radial_mps=float("nan")).replace("NaN", literal)
    assert literal in text
    result = parse_line(text)
    assert isinstance(result, RadarDetection), result
    assert result.radial_mps is None and result.sigma_radial_mps is None
    assert result.range_m == RADAR.range_m


# -- the schema ---------------------------------------------------------------------------------


def test_schema_branches_match_the_measurement_dataclasses() -> None:
    """One `oneOf` branch per kind, with exactly the dataclass's fields; a field is required in the
    schema when the parser requires it (no default, not nullable), nullable when its type is."""
    branches = {ref["$ref"].split("/")[-1] for ref in SCHEMA["oneOf"]}
    assert branches == set(MEASUREMENT_KINDS)
    for name, cls in MEASUREMENT_KINDS.items():
        branch = SCHEMA["$defs"][name]
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(branch["properties"]) == {"type", "kind", *fields}, name
        assert branch["properties"]["kind"] == {"const": name}
        assert branch["additionalProperties"] is False
        for field_name, f in fields.items():
            nullable = type(None) in typing.get_args(hints[field_name])
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            assert (field_name in branch["required"]) == (not nullable and not has_default), (
                name,
                field_name,
            )
            prop = branch["properties"][field_name]
            if "$ref" in prop:
                prop = SCHEMA["$defs"][prop["$ref"].split("/")[-1]]
            types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
            assert ("null" in types) == nullable, (name, field_name)


# -- Hypothesis -----------------------------------------------------------------------------------

_FINITE = st.floats(allow_nan=False, allow_infinity=False)
_SCALAR: dict[Any, st.SearchStrategy[Any]] = {
    str: st.text(max_size=12),
    float: _FINITE,
    int: st.integers(-(2**40), 2**40),
    bool: st.booleans(),
}


def _strategy(hint: Any, name: str) -> st.SearchStrategy[Any]:
    if name.startswith("sigma_") and hint is float:
        return st.floats(min_value=1e-9, max_value=1e6)
    if hint in _SCALAR:
        return _SCALAR[hint]
    args = typing.get_args(hint)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | _strategy(inner, name)
    if len(args) == 2 and args[1] is Ellipsis:
        return st.lists(_strategy(args[0], name), max_size=3).map(tuple)
    return st.tuples(*(_strategy(a, name) for a in args))


def _measurements() -> st.SearchStrategy[Any]:
    kinds = []
    for cls in MEASUREMENT_KINDS.values():
        hints = typing.get_type_hints(cls)
        kinds.append(
            st.builds(cls, **{f.name: _strategy(hints[f.name], f.name) for f in dataclasses.fields(cls)})
        )
    return st.one_of(kinds)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def _finite(value: Any) -> bool:
    """Whether every number in a JSON value is one a float holds (JSON Schema has no notion of it)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) < 2**1023
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


@settings(max_examples=200, deadline=None)
@given(_measurements())
def test_any_measurement_round_trips_and_validates(m: Any) -> None:
    text = wire.dumps(wire.measurement_record(m))
    assert parse_line(text) == m
    VALIDATOR.validate(json.loads(text))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_random_lines_never_raise(text: str | bytes) -> None:
    result = parse_line(text)
    assert result is None or isinstance(result, (Rejected, UnknownKind))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_measurements(), st.data())
def test_mutated_records_are_parsed_or_rejected_as_the_schema_says(m: Any, data: st.DataObject) -> None:
    """Change, drop or add one field of a valid record: the parser never raises, and it accepts the
    line exactly when the schema does (finite numbers: JSON cannot carry others)."""
    record = wire.measurement_record(m)
    key = data.draw(st.sampled_from([*sorted(record), "extra"]))
    action = data.draw(st.sampled_from(["drop", "replace"]))
    if action == "drop":
        record.pop(key, None)
    else:
        record[key] = data.draw(_JSON)
    text = json.dumps(record)
    result = parse_line(text)
    assert result is None or isinstance(result, (Rejected, UnknownKind, *MEASUREMENT_KINDS.values()))
    kind = record.get("kind")
    if (
        _finite(record)
        and record.get("type") == "measurement"
        and isinstance(kind, str)
        and kind in MEASUREMENT_KINDS
    ):
        valid = VALIDATOR.is_valid(json.loads(text))
        assert valid == (not isinstance(result, Rejected)), (text, result)


def test_large_finite_numbers_are_kept() -> None:
    m = parse_line(line(RADAR, range_m=1e308, t_receive=-5e-324))
    assert isinstance(m, RadarDetection) and m.range_m == 1e308 and math.isfinite(m.t_receive)
