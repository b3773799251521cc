"""Units: pixel sizes parsed, units chosen, columns named and scaled in one place."""

from __future__ import annotations

import pytest

from napari_poregrain.analysis.units import (
    choose_unit,
    column_name,
    parse_pixel_size,
    pixel_length,
    scale_factor,
)


def test_units_and_pixel_size_parsing():
    assert parse_pixel_size("13.96nm") == pytest.approx(13.96)
    assert parse_pixel_size(" 0.01396 um") == pytest.approx(13.96)
    assert parse_pixel_size("0.01396µm") == pytest.approx(13.96)
    assert parse_pixel_size("1.5e-2 μm") == pytest.approx(15.0)
    for bad in ("13.96", "nm", "-3nm", "3 parsecs"):
        with pytest.raises(ValueError, match="pixel size"):
            parse_pixel_size(bad)
    assert choose_unit(None) == "px" and choose_unit(13.96) == "nm"
    assert choose_unit(150.0) == "µm" and choose_unit(13.96, "um") == "µm"
    with pytest.raises(ValueError, match="pixel size"):
        choose_unit(None, "nm")


def test_column_names_and_scale_factors():
    assert column_name("area", "µm") == "area_um2"
    assert column_name("perimeter", "nm") == "perimeter_nm"
    assert column_name("aspect_ratio", "nm") == "aspect_ratio"
    assert pixel_length(None, "px") == 1.0
    assert pixel_length(250.0, "µm") == pytest.approx(0.25)
    assert scale_factor("area", 0.25) == pytest.approx(0.0625)
    assert scale_factor("major_axis", 0.25) == 0.25
    assert scale_factor("orientation_deg", 0.25) == 1.0


# -- issue 26: "13.96Mm" was read as millimetres, "13.96Nm" as nanometres, 1e-300nm accepted ----
@pytest.mark.parametrize("text", ["13.96Mm", "13.96Nm", "13.96 NM", "5 UM", "2 PM", "3 parsecs"])
def test_units_are_case_sensitive_and_unknown_ones_refused(text):
    with pytest.raises(ValueError, match="unknown unit .*case-sensitive"):
        parse_pixel_size(text)


@pytest.mark.parametrize("text", ["1e-300nm", "0.5pm", "2mm", "1e300 nm", "1.5m"])
def test_a_pixel_size_outside_1_pm_to_1_mm_is_refused(text):
    with pytest.raises(ValueError, match="outside 1 pm to 1 mm"):
        parse_pixel_size(text)


def test_the_physical_range_ends_are_accepted():
    assert parse_pixel_size("1pm") == pytest.approx(1e-3)
    assert parse_pixel_size("1mm") == pytest.approx(1e6) and parse_pixel_size("2 Å") == 0.2
