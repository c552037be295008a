"""The class table of a dataset: names, display colours and the ignore value.

Labels are 8-bit PNGs, so a table holds at most 255 classes besides ``ignore_index``. Every label value
a dataset yields is either a class index ``0..num_classes-1`` or ``ignore_index``; :meth:`value_lut`
is the lookup array that enforces that (``-1`` marks a value that is neither).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssnas.errors import UserError

IGNORE_INDEX = 255
LABEL_VALUES = 256          # an 8-bit label PNG holds values 0..255
INVALID = -1                # lookup-table entry for a value that is neither a class nor ignore
IGNORE_COLOR = (0, 0, 0)
DEFAULT_COLORMAP = "tab20"  # colours for a classes.yaml without ``colors``


@dataclass(frozen=True)
class ClassTable:
    names: tuple
    colors: tuple           # one (r, g, b) tuple of ints 0..255 per class
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def value_lut(self) -> np.ndarray:
        """int16[256]: identity on class indices and ``ignore_index``, ``INVALID`` elsewhere."""
        lut = np.full(LABEL_VALUES, INVALID, dtype=np.int16)
        lut[: self.num_classes] = np.arange(self.num_classes)
        lut[self.ignore_index] = self.ignore_index
        return lut

    def palette(self) -> np.ndarray:
        """uint8[256, 3]: the colour of every label value (ignore and unknown values are black)."""
        palette = np.zeros((LABEL_VALUES, 3), dtype=np.uint8)
        palette[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8).reshape(-1, 3)
        palette[self.ignore_index] = IGNORE_COLOR
        return palette

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """H×W label (class indices / ignore) -> H×W×3 uint8 RGB image."""
        return self.palette()[np.asarray(label, dtype=np.uint8)]

    @classmethod
    def from_yaml(cls, path) -> "ClassTable":
        """Read a folder dataset's ``classes.yaml`` (``names``, optional ``colors``, ``ignore_index``)."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: missing, expected a classes.yaml with 'names: [..]'")
        from ssnas.config import read_yaml, unknown_keys
        spec = read_yaml(path, "classes table (names, colors, ignore_index)")
        unknown = unknown_keys(spec, {"names", "colors", "ignore_index"})
        if unknown:
            raise UserError(f"{path}: unknown key(s) {unknown}, expected names, colors, ignore_index")
        return cls.from_spec(spec.get("names"), spec.get("colors"), spec.get("ignore_index", IGNORE_INDEX),
                             where=str(path))

    @classmethod
    def from_spec(cls, names, colors=None, ignore_index=IGNORE_INDEX, where="classes") -> "ClassTable":
        """Validate plain values (as read from YAML) into a table; errors name ``where`` and the key."""
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise UserError(f"{where}: names must be a non-empty list of strings, got {names!r}")
        if len(set(names)) != len(names):
            raise UserError(f"{where}: names contains duplicates, expected unique class names")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int) or not 0 <= ignore_index < LABEL_VALUES:
            raise UserError(f"{where}: ignore_index {ignore_index!r}, expected an integer 0..255")
        if ignore_index < len(names):
            raise UserError(f"{where}: ignore_index {ignore_index} is a class index (there are {len(names)} "
                            f"classes), expected a value >= {len(names)}")
        if colors is None:
            colors = default_colors(len(names))
        if not isinstance(colors, list) or len(colors) != len(names):
            raise UserError(f"{where}: colors must list one [r, g, b] per name ({len(names)}), got {colors!r}")
        for i, color in enumerate(colors):
            if (not isinstance(color, (list, tuple)) or len(color) != 3
                    or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)):
                raise UserError(f"{where}: colors[{i}] = {color!r}, expected [r, g, b] with integers 0..255")
        return cls(tuple(names), tuple(tuple(c) for c in colors), ignore_index)

    @classmethod
    def cityscapes(cls) -> "ClassTable":
        """The 19 Cityscapes trainIds, straight from ``cityscapesscripts.helpers.labels``."""
        from cityscapesscripts.helpers.labels import trainId2label

        train_ids = sorted(t for t in trainId2label if 0 <= t < IGNORE_INDEX)
        return cls(tuple(trainId2label[t].name for t in train_ids),
                   tuple(tuple(trainId2label[t].color) for t in train_ids), IGNORE_INDEX)


def default_colors(n: int) -> list:
    """``n`` distinct display colours from a matplotlib qualitative colormap (cycled)."""
    from matplotlib import colormaps

    cmap = colormaps[DEFAULT_COLORMAP]
    return [[int(round(255 * c)) for c in cmap(i % cmap.N)[:3]] for i in range(n)]
