"""The one model picker: the default model, the user's models, or a checkpoint file."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox, FileEdit

from ..registry import available_models
from ._events import events

FILE_CHOICE = "checkpoint file…"
SCRATCH_CHOICE = "new model (from scratch)"
NO_MODEL = (
    "No default model is installed yet: choose a checkpoint file (.safetensors), "
    "e.g. one made with `poregrain train`."
)
CHOOSE_FILE = "Choose a checkpoint file (.safetensors)."


class ModelPicker:
    """A model ComboBox and its checkpoint-file field; lists models again when one is added.

    ``scratch`` offers "new model (from scratch)"; ``follow`` selects a newly added model (else
    the list is only refreshed). ``on_change`` runs after the choice or the file changed.
    """

    def __init__(
        self, label: str = "model", *, scratch: bool = False, follow: bool = True, on_change=None
    ) -> None:
        self.scratch, self.follow, self.on_change = scratch, follow, on_change
        self.combo = ComboBox(label=label, choices=self.choices)
        self.file = FileEdit(label="file", mode="r", filter="*.safetensors")
        self.combo.changed.connect(self._changed)
        self.file.changed.connect(self._changed)
        events.model_added.connect(self.on_model_added)
        # a closed viewer's widget must not keep listening (the event is process-wide)
        self.combo.native.destroyed.connect(self.detach)
        self.file.visible = self.combo.value == FILE_CHOICE

    @property
    def widgets(self) -> list:
        return [self.combo, self.file]

    def choices(self, _widget=None) -> list[str]:
        extra = [FILE_CHOICE, SCRATCH_CHOICE] if self.scratch else [FILE_CHOICE]
        return [*available_models(), *extra]

    def detach(self, *_) -> None:
        events.model_added.disconnect(self.on_model_added, missing_ok=True)

    def _changed(self, *_) -> None:
        self.file.visible = self.combo.visible and self.combo.value == FILE_CHOICE
        if self.on_change is not None:
            self.on_change()

    def set_visible(self, visible: bool) -> None:
        self.combo.visible = visible
        self.file.visible = visible and self.combo.value == FILE_CHOICE

    # -- the choice --------------------------------------------------------------------------
    @property
    def from_scratch(self) -> bool:
        return self.combo.value == SCRATCH_CHOICE

    def path(self) -> Path | None:
        """The chosen model's file; None for "from scratch"; ValueError when there is none."""
        choice = self.combo.value
        if choice == SCRATCH_CHOICE:
            return None
        if choice == FILE_CHOICE:
            path = Path(self.file.value)
            if not path.is_file():
                raise ValueError("choose the model's checkpoint file (.safetensors)")
            return path
        path = available_models().get(choice)
        if path is None:
            raise ValueError(f"the model {choice!r} is no longer available")
        return path

    @property
    def ready(self) -> bool:
        """A model file is chosen and exists (never true for "from scratch")."""
        try:
            return self.path() is not None
        except ValueError:
            return False

    def hint(self) -> str:
        """What to do when no model is ready ("" when one is)."""
        if self.ready or self.from_scratch:
            return ""
        return NO_MODEL if len(self.combo.choices) == 1 else CHOOSE_FILE

    # -- new models --------------------------------------------------------------------------
    def select(self, path) -> None:
        """List the models again and select ``path`` (a registered model or any file)."""
        path = Path(path)
        self.combo.reset_choices()
        registered = {p.resolve(): name for name, p in available_models().items()}
        name = registered.get(path.resolve())
        if name is not None:
            self.combo.value = name
        else:
            self.combo.value = FILE_CHOICE
            self.file.value = path
        self._changed()

    def on_model_added(self, path) -> None:
        """``events.model_added``: refresh the list (and select the new model if ``follow``)."""
        try:
            if self.follow:
                self.select(path)
            else:
                self.combo.reset_choices()
        except RuntimeError:  # the widget was deleted
            self.detach()
