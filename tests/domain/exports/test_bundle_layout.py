"""The exports bundle's layout is stored state (`exports_layout` in the database): a layout that
does not fit its bundle is refused, naming the section, never read short or past the end."""
from __future__ import annotations

import pytest

from lorafiles.domain import bundle
from lorafiles.usecases.publish import _dataset_name

BLOB = b"0123456789"


def test_sections_are_the_bytes_the_layout_names():
    layout = {"openai": [0, 4], "report": [4, 6]}
    assert bundle.section(BLOB, layout, "openai") == b"0123"
    assert bundle.section(BLOB, layout, "report") == b"456789"
    assert bundle.section(BLOB, {"openai": [10, 0]}, "openai") == b""  # empty, at the very end


@pytest.mark.parametrize("layout", [
    {}, {"trl": [0, 1]}, {"openai": None}, {"openai": [0]}, {"openai": [0, 1, 2]}, {"openai": "0,4"},
    {"openai": [0.0, 4]}, {"openai": ["0", "4"]}, {"openai": [True, 4]}, {"openai": {"offset": 0}}, None, [],
])
def test_a_layout_without_a_pair_of_integers_is_refused_naming_the_section(layout):
    with pytest.raises(ValueError, match=r"no \[offset, length\] for section 'openai'"):
        bundle.section(BLOB, layout, "openai")


@pytest.mark.parametrize("span", [[-1, 2], [0, -1], [0, 11], [10, 1], [5, 6], [2**63, 1]])
def test_a_span_outside_the_bundle_is_refused(span):
    with pytest.raises(ValueError, match=r"section 'openai' .* is outside its 10 bytes"):
        bundle.section(BLOB, {"openai": span}, "openai")


@pytest.mark.parametrize("name,key", [
    ("Elena v1", "lorafiles_elena_v1"),
    ("  Mixed--CASE__name!! ", "lorafiles_mixed_case_name"),
    ("../../etc/passwd", "lorafiles_etc_passwd"),
    ("Ünïcødé — 训练 🙂", "lorafiles_n_c_d"),
    ("训练数据", "lorafiles_training_file"),
    ("", "lorafiles_training_file"),
    ("___", "lorafiles_training_file"),
    ("a\x00b\nc\td", "lorafiles_a_b_c_d"),
    ("Ⅻ１２", "lorafiles_training_file"),  # (NFKC would give "xii12": not ASCII as written, so replaced)
])
def test_the_llamafactory_dataset_key_is_lower_snake_ascii_whatever_the_file_is_called(name, key):
    assert _dataset_name(name) == key


def test_the_dataset_key_never_has_a_doubled_or_edge_underscore():
    import random
    rng = random.Random(5)
    alphabet = "aZ9_ -./\\\x00é训🙂"
    for _ in range(2000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        key = _dataset_name(name)
        assert key.startswith("lorafiles_") and key.isascii() and "__" not in key and not key.endswith("_"), name
        assert all(c.islower() or c.isdigit() or c == "_" for c in key), name


def _member() -> "bundle.MemberExports":
    stats = {"tokens": {"openai": [[12, 5], [30, 9]], "trl": [[11, 4]], "axolotl": [], "sharegpt": [[7, 7]]},
             "lines": {"openai": 2, "trl": 1, "axolotl": 0, "sharegpt": 1},
             "exclusions": [], "trims": [], "changes": {"role_inferred": 1}}
    lines = {"openai": b'{"messages":[1]}\n{"messages":[2]}\n', "trl": b'{"prompt":"p"}\n', "axolotl": b"",
             "sharegpt": b'{"conversations":[]}\n'}
    return bundle.MemberExports(conversation_id="c0ffee00", lines=lines, stats=stats)


def test_pack_puts_the_sections_one_after_another_in_the_fixed_order():
    import orjson

    member = _member()
    blob, layout = bundle.pack(member)
    report = orjson.dumps(member.report_entry(), option=orjson.OPT_SORT_KEYS)
    assert bundle.SECTIONS == ("openai", "trl", "axolotl", "sharegpt", "report")
    assert list(layout) == list(bundle.SECTIONS)
    assert layout == {"openai": [0, 34], "trl": [34, 15], "axolotl": [49, 0], "sharegpt": [49, 21],
                      "report": [70, len(report)]}
    assert blob == member.lines["openai"] + member.lines["trl"] + member.lines["sharegpt"] + report
    for name in bundle.SECTIONS:
        expected = report if name == "report" else member.lines[name]
        assert bundle.section(blob, layout, name) == expected
    # the report section is the entry with sorted keys, so the same member always packs to the same bytes
    assert orjson.loads(bundle.section(blob, layout, "report")) == member.report_entry()
    assert list(orjson.loads(bundle.section(blob, layout, "report"))) == sorted(member.report_entry())
    assert bundle.pack(_member()) == (blob, layout)


def test_the_out_of_range_message_gives_the_span_and_the_size():
    with pytest.raises(ValueError) as err:
        bundle.section(BLOB, {"trl": [5, 6]}, "trl")
    assert str(err.value) == "exports bundle section 'trl' [5, 11) is outside its 10 bytes"
    with pytest.raises(ValueError) as err:
        bundle.section(BLOB, {"trl": [3]}, "trl")
    assert str(err.value) == "exports bundle layout has no [offset, length] for section 'trl': [3]"
