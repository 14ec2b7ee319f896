"""The one staircase drawing: a measured curve, optionally against a prediction."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from hwprune.measure.plot import draw_staircase, plot_staircase

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[2]


def _legend_of(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Record the legend labels and title of the figures drawn (what a reader sees)."""
    import matplotlib.pyplot as plt

    seen: dict[str, list[str]] = {"labels": [], "title": []}
    close = plt.close

    def spy(fig: object = None) -> None:
        ax = fig.axes[0]  # type: ignore[union-attr]
        seen["labels"] += [t.get_text() for t in ax.get_legend().get_texts()]
        seen["title"].append(ax.get_title())
        close(fig)

    monkeypatch.setattr(plt, "close", spy)
    return seen


def test_draw_marks_the_friendly_counts_of_both_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _legend_of(monkeypatch)
    # measured friendly: 8, 16, 20; predicted friendly: 12, 20
    png = draw_staircase(
        [4, 8, 12, 16, 20], [1.0, 1.0, 2.0, 1.5, 3.0], tmp_path / "a" / "s.png", predicted_ms=[1, 1, 1, 3, 3]
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "measured friendly counts (3)" in seen["labels"]
    assert "predicted friendly counts (2)" in seen["labels"]
    assert "unpruned (20 ch): 3 ms" in seen["labels"]


def test_draw_rejects_bad_series(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`counts` must hold 2 or more"):
        draw_staircase([4], [1.0], tmp_path / "s.png")
    with pytest.raises(ValueError, match="`counts` must be strictly increasing"):
        draw_staircase([8, 4], [1.0, 2.0], tmp_path / "s.png")
    with pytest.raises(ValueError, match=r"`predicted_ms` must have one value per count \(2\), got 3"):
        draw_staircase([4, 8], [1.0, 2.0], tmp_path / "s.png", predicted_ms=[1.0, 2.0, 3.0])


def test_table_plot_counts_slowdowns_with_the_shared_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from hwprune.measure.table import read_table
    from hwprune.staircase import friendly_from_curve, is_slowdown

    table = REPO / "tables" / "cpu_torch" / "small_resnet_28.csv"
    df = read_table(table)
    layer = "layers.2.conv2"
    rows = df[df["layer"].astype(str).str.split(";").apply(lambda n: layer in n)]
    rows = rows[(rows["batch"] == rows["batch"].min()) & (rows["in_channels"] == rows["in_channels"].max())]
    lat = rows.groupby("out_channels")["latency_ms"].median()
    slower = int(np.sum(is_slowdown(lat.to_numpy()[:-1], lat.iloc[-1])))
    n_friendly = len(friendly_from_curve(lat.index.tolist(), lat.tolist()))
    seen = _legend_of(monkeypatch)
    plot_staircase(table, layer, tmp_path / "t.png")
    assert f"{slower}/{len(lat) - 1} pruned counts >5% slower than unpruned" in seen["title"][0]
    assert f"friendly counts ({n_friendly})" in seen["labels"]
