import pytest

from robust_seg.errors import ConfigError
from robust_seg.radii import format_radius, parse_radii, parse_radius


@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), ("0.5/255", 0.5 / 255), (0.0314, 0.0314),
                                         ("0.0314", 0.0314), (0, 0.0), ("1e-2", 0.01)])
def test_radii_as_papers_write_them(text, value):
    assert parse_radius(text) == pytest.approx(value, abs=1e-15)


def test_lists_and_round_trip():
    assert [r.value for r in parse_radii(["4/255", "8/255", 0])] == pytest.approx([4 / 255, 8 / 255, 0])
    assert parse_radii("[4/255,8/255]") == [(4 / 255, "4/255"), (8 / 255, "8/255")]  # (value, key) pairs
    assert parse_radii(0.0314)[0].key == "0.0314" and parse_radii("0.5/255")[0].key == "0.5/255"
    assert [format_radius(r) for r in (0, 4 / 255, 0.25 / 255, 0.01)] == ["0", "4/255", "0.25/255", "0.01"]


@pytest.mark.parametrize("bad", ["abc", "8/0", "-1/255", True, "8//255", []])
def test_malformed_radius_is_one_clear_error(bad):
    with pytest.raises(ConfigError, match="attack.eps"):
        parse_radii(bad) if isinstance(bad, list) else parse_radius(bad)
