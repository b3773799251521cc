"""The docks' matplotlib plots: training curves, IoU history, size distributions and the
colour bars of the size-coloured layers."""

from __future__ import annotations

import time

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..analysis.measure import OBJECT_CLASSES, size_histogram
from ..classes import CLASS_NAMES, GRAIN, LAYER_COLOURS, PORE

CLASS_COLOURS = {"matrix": "grey", "grain": LAYER_COLOURS[GRAIN], "pore": LAYER_COLOURS[PORE]}


def canvas(figsize: tuple[float, float], min_height: int, **figure_kw):
    """A figure in a Qt canvas of at least ``min_height`` pixels."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

    figure = Figure(figsize=figsize, **figure_kw)
    widget = FigureCanvasQTAgg(figure)
    widget.setMinimumHeight(min_height)
    return figure, widget


def _tick_format(x, _pos) -> str:
    return f"{x:g}"


class TrainingPlot:
    """Training loss per step above validation IoU per class; redrawn at most twice a second."""

    def __init__(self) -> None:
        self.figure, self.canvas = canvas((4, 3.2), 220, tight_layout=True)
        self.axes = self.figure.subplots(2, 1, sharex=True)
        self._last_draw = 0.0
        self.reset()

    def reset(self) -> None:
        loss_ax, iou_ax = self.axes
        loss_ax.clear()
        iou_ax.clear()
        (self._loss_line,) = loss_ax.plot([], [], lw=0.8, color="tab:blue")
        loss_ax.set_ylabel("training loss", fontsize=8)
        self._iou_lines = {
            name: iou_ax.plot([], [], "o-", ms=3, lw=1, color=CLASS_COLOURS[name], label=name)[0]
            for name in CLASS_NAMES
        }
        iou_ax.set_ylabel("validation IoU", fontsize=8)
        iou_ax.set_xlabel("step", fontsize=8)
        iou_ax.set_ylim(0, 1)
        iou_ax.legend(fontsize=7, loc="lower right")
        for ax in self.axes:
            ax.tick_params(labelsize=7)
        self._last_draw = 0.0
        self.canvas.draw_idle()

    def draw(self, curves, *, soon: bool = False) -> None:
        """Show ``curves`` (:class:`TrainingCurves`); ``soon``: skip if drawn < 0.5 s ago."""
        if soon and time.monotonic() - self._last_draw <= 0.5:
            return
        self._last_draw = time.monotonic()
        loss_ax, iou_ax = self.axes
        self._loss_line.set_data(curves.steps, curves.losses)
        for name, line in self._iou_lines.items():
            line.set_data(curves.val_steps, curves.ious[name])
        loss_ax.relim()
        loss_ax.autoscale_view()
        iou_ax.relim()
        iou_ax.autoscale_view(scaley=False)
        self.canvas.draw_idle()


def draw_iou_history(figure: Figure, history) -> None:
    """IoU per class and mean per round of an :class:`IoUHistory`."""
    figure.clear()
    ax = figure.add_subplot(111)
    rounds = [row["round"] for row in history.rows]
    for name in CLASS_NAMES:
        colour = CLASS_COLOURS[name]
        ax.plot(rounds, history.series(f"iou_{name}"), "o-", color=colour, label=name, ms=3)
    ax.plot(rounds, history.series("mean_iou"), "s--", color="black", label="mean", ms=3)
    ax.set_ylim(0, 1)
    ax.set_xlabel("round", fontsize=8)
    ax.set_ylabel("IoU", fontsize=8)
    ax.tick_params(labelsize=7)
    if rounds:
        ax.set_xticks(rounds)
        ax.legend(fontsize=6, loc="lower right")


def draw_size_histograms(figure: Figure, m) -> None:
    """Per object class: counts by equivalent diameter (log x) and the share of the area."""
    figure.clear()
    axes = figure.subplots(len(OBJECT_CLASSES), 1)
    for ax, name in zip(axes, OBJECT_CLASSES, strict=True):
        table = m.objects[name]
        d, a = table["equivalent_diameter"], table["area"]
        ax.set_title(f"{name[:-1]}-size distribution (n = {len(d)})", fontsize=9)
        if len(d) == 0:
            ax.text(0.5, 0.5, f"no {name}", transform=ax.transAxes, ha="center")
            ax.set_axis_off()
            continue
        edges, counts, area = size_histogram(d, a, bins=max(5, min(25, len(d) // 3)))
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", alpha=0.7)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(_tick_format))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"equivalent diameter ({m.unit})", fontsize=8)
        ax.set_ylabel("count", fontsize=8)
        twin = ax.twinx()
        twin.stairs(100 * area, edges, color="C3")
        twin.set_ylabel("% of area", fontsize=8, color="C3")
        ax.tick_params(labelsize=7)
        twin.tick_params(labelsize=7)


def size_norm(diameters) -> LogNorm:
    """The log colour scale of :func:`~..analysis.summary.size_colours` for these diameters."""
    d = np.asarray(diameters, float)
    low, high = float(d.min()), float(d.max())
    if high <= low:  # one size: size_colours gives the middle colour
        return LogNorm(low / 2, low * 2)
    return LogNorm(low, high)


def draw_size_colourbars(figure: Figure, m) -> list[str]:
    """One horizontal colour bar per class with objects: equivalent diameter, log scale, viridis
    (the colours of the "by size" layers). Returns the classes drawn."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable

    figure.clear()
    drawn = [name for name in OBJECT_CLASSES if len(m.objects[name]["equivalent_diameter"])]
    for i, name in enumerate(drawn):
        ax = figure.add_subplot(len(drawn), 1, i + 1)
        norm = size_norm(m.objects[name]["equivalent_diameter"])
        bar = figure.colorbar(
            ScalarMappable(norm, colormaps["viridis"]), cax=ax, orientation="horizontal"
        )
        bar.ax.xaxis.set_major_formatter(FuncFormatter(_tick_format))
        bar.ax.xaxis.set_minor_formatter(NullFormatter())
        bar.set_label(f"{name[:-1]} equivalent diameter ({m.unit})", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return drawn


class SizeLegend:
    """A small canvas with the colour bars of the "by size" layers; hidden until drawn."""

    def __init__(self) -> None:
        self.figure, self.canvas = canvas((3, 1.2), 90, constrained_layout=True)
        self.canvas.setVisible(False)

    def draw(self, m) -> None:
        """Show the colour bars of measurement ``m`` (hidden when it holds no object)."""
        drawn = draw_size_colourbars(self.figure, m)
        self.canvas.setMinimumHeight(60 * max(len(drawn), 1) + 10)
        self.canvas.setVisible(bool(drawn))
        self.canvas.draw_idle()
