"""The diversity-quality plot is a real, non-blank PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from baco_local.errors import OutputFileError
from baco_local.metrics.registry import Metric, get_metric

pytest.importorskip("matplotlib")

from baco_local.metrics.plot import plot_plane  # noqa: E402

QUALITY = Metric("q", "quality", "a made-up quality score", True)
CURVES = {
    "aligned": np.array([[0.9, -1.0], [0.8, -1.2]]),
    "base": np.array([[0.3, -3.0], [np.nan, -3.5]]),
    "baco": np.array([[0.7, -1.3], [0.5, -1.6], [0.35, -2.2]]),
}


def test_png_opens_and_is_not_blank(tmp_path: Path) -> None:
    from matplotlib.image import imread

    path = plot_plane(CURVES, tmp_path / "plane.png", x_metric=get_metric("self-bleu"), y_metric=QUALITY)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert float(np.var(pixels[..., :3])) > 1e-3


def test_unwritable_path_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(OutputFileError, match="cannot write plot"):
        plot_plane(CURVES, tmp_path / "missing" / "plane.png", x_metric=get_metric("vendi"),
                   y_metric=QUALITY)
