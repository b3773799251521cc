import subprocess
import sys
from pathlib import Path

import numpy as np

from napari_poregrain._widgets.segment import SegmentWidget


def test_npe2_validate_passes():
    npe2 = Path(sys.executable).with_name("npe2")
    res = subprocess.run(
        [str(npe2), "validate", "napari-poregrain"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_widget_docks_from_the_plugins_menu_and_sample_opens(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-poregrain", "shale")
    assert layers[0].data.shape == (1024, 1024)
    np.testing.assert_allclose(layers[0].scale, (0.01, 0.01))
    _, widget = viewer.window.add_plugin_dock_widget(
        "napari-poregrain", "Segment pores and grains"
    )
    assert isinstance(widget, SegmentWidget)
    assert widget._image.value is layers[0]
