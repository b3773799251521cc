"""Class ids, names and layer colours shared by every part of the package."""

MATRIX = 0
GRAIN = 1
PORE = 2
IGNORE = 255

CLASS_NAMES: tuple[str, ...] = ("matrix", "grain", "pore")
N_CLASSES = len(CLASS_NAMES)

# Layer name and display colour of each foreground class.
LAYER_NAMES = {GRAIN: "grains", PORE: "pores"}
LAYER_COLOURS = {GRAIN: "red", PORE: "green"}
