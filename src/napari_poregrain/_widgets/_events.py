"""Events shared between dock widgets (no business logic)."""

from psygnal import Signal, SignalGroup


class _Events(SignalGroup):
    model_added = Signal(object)
    """Emitted with the path of a newly stored model; the segment widget lists and selects it."""


events = _Events()
