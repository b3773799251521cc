"""Events shared between dock widgets (no business logic)."""

from psygnal import Signal, SignalGroup


class _Events(SignalGroup):
    model_added = Signal(object)
    """Emitted with the path of a newly stored model; every model picker lists it again."""


events = _Events()
