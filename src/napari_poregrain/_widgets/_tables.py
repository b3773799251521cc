"""Small read-only Qt tables of text."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem


def readonly_table(columns: list[str], rows: list[str], *, fit: bool = False) -> QTableWidget:
    """A table with these headers that the user cannot edit; ``fit``: exactly as tall as it is."""
    table = QTableWidget(len(rows), len(columns))
    table.setHorizontalHeaderLabels(columns)
    if rows:
        table.setVerticalHeaderLabels(rows)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    if fit:
        fit_height(table)
    return table


def fit_height(table: QTableWidget) -> None:
    """Make a small fixed table exactly as tall as its rows (no scroll bar)."""
    table.resizeRowsToContents()
    height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth()
    height += sum(table.rowHeight(r) for r in range(table.rowCount()))
    table.setFixedHeight(height + 8)  # slack for napari's stylesheet padding
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)


def fill(table: QTableWidget, rows: list[list[str]], *, first_row: int = 0) -> None:
    """Put ``rows`` of texts into the table from ``first_row`` on (rows must exist)."""
    for r, cells in enumerate(rows, start=first_row):
        for c, text in enumerate(cells):
            table.setItem(r, c, QTableWidgetItem(text))
