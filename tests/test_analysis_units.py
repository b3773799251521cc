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
