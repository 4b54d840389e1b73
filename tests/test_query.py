"""The safe metadata query language."""

from __future__ import annotations

import pytest

from deepstrf.datasets._query import Query, compile_query

META = {"area": "Field_L", "snr": 0.7, "depth": 350, "type": "song", "good": True,
        "rig": None}


@pytest.mark.parametrize("text, expected", [
    ("area == 'Field_L'", True),
    ("area != 'Field_L'", False),
    ("snr > 0.5 and depth <= 400", True),
    ("200 < depth < 300", False),
    ("100 <= depth <= 350", True),
    ("type in ('song', 'call')", True),
    ("type not in ['song']", False),
    ("type in {'call'}", False),
    ("'ong' in type", True),
    ("good", True),
    ("not good or snr > 0.6", True),
    ("rig is None", True),
    ("rig is not None", False),
    ("depth == -350 or depth == +350", True),
    ("(area == 'MLd' or area == 'Field_L') and not (snr < 0.1)", True),
    ("True", True),
    ("snr >= 7e-1", True),
])
def test_evaluation(text, expected):
    assert Query(text)(META) is expected


@pytest.mark.parametrize("text, expected", [
    ("missing == 1", False),
    ("not missing == 1", False),          # unknown stays unknown
    ("missing == 1 or snr > 0.5", True),  # True or unknown
    ("missing == 1 and snr > 0.5", False),
    ("not (missing == 1 and snr > 5)", True),  # unknown and False = False
    ("area > 3", False),                  # incomparable types: unknown
    ("not area > 3", False),
])
def test_three_valued_logic_for_missing_keys(text, expected):
    assert Query(text)(META) is expected


def test_keys_text_and_hash():
    q = Query("  snr > 0.5 and area == 'L'  ")
    assert q.text == "snr > 0.5 and area == 'L'"
    assert q.keys == ("snr", "area")
    assert q == Query("snr > 0.5 and area == 'L'") and hash(q) == hash(Query(q.text))
    assert compile_query(q) is q
    assert repr(q) == "Query(\"snr > 0.5 and area == 'L'\")"


@pytest.mark.parametrize("text, message, bad", [
    ("len(area) > 2", "function calls are not allowed", "len(area)"),
    ("area.upper() == 'X'", "function calls are not allowed", "area.upper()"),
    ("area.real == 1", "attribute access is not allowed", "area.real"),
    ("snr + 1 > 2", "arithmetic is not allowed", "snr + 1"),
    ("tags[0] == 'x'", "subscripts are not allowed", "tags[0]"),
    ("[x for x in area] == []", "comprehensions are not allowed", "[x for x in area]"),
    ("area == 'L' if snr else False", "conditional expressions cannot be used", None),
    ("__import__('os').system('echo hi') == 0", "function calls are not allowed", None),
    ("snr is 1", "may only compare with None", "1"),
    ("area in 3", "'in' needs a tuple", "3"),
    ("area == {'a': 1}", "dict literals are not allowed", "{'a': 1}"),
    ("area == b'L'", "literal of type bytes", "b'L'"),
    ("area in (1, snr)", "expected a literal value", "snr"),
])
def test_rejects_unsafe_or_unsupported(text, message, bad):
    with pytest.raises(ValueError) as err:
        Query(text)
    msg = str(err.value)
    assert message in msg and "Allowed:" in msg
    if bad is not None:
        line, carets = msg.splitlines()[1], msg.splitlines()[2]
        start = line.index(bad)
        assert carets.index("^") == start and carets.count("^") == len(bad)


def test_syntax_errors_point_and_hint():
    with pytest.raises(ValueError, match=r"use '==' to compare"):
        Query("area = 'L'")
    with pytest.raises(ValueError, match="syntax error"):
        Query("snr > ")
    with pytest.raises(ValueError, match="empty"):
        Query("   ")
    with pytest.raises(TypeError, match="must be a string"):
        Query(3)


def test_never_evaluates_code(monkeypatch):
    import builtins

    monkeypatch.setattr(builtins, "eval", lambda *a, **k: pytest.fail("eval was called"))
    assert Query("snr > 0.5")(META)
