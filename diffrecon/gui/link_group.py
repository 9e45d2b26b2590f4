"""Linked pan/zoom for image panels of different shapes.

pyqtgraph's ``setXLink``/``setYLink`` copy each axis range verbatim, which fights the aspect lock
when the linked views have different proportions (a tall panel then shows -200..300 around a
128-pixel image). Here a group shares the *requested* region instead: each panel shows at least
that region, its aspect lock widening the other axis as its own shape needs. Until the user pans
or zooms, the group is "fitted" and every panel fits its own image on load and on resize.
"""
from __future__ import annotations


class LinkGroup:
    """Panels that pan and zoom together. Every panel starts in a group of its own."""

    def __init__(self) -> None:
        self.panels: list = []
        self.fitted = True
        self._busy = False  # guards against echoes while we move the other panels

    def add(self, panel) -> None:
        if panel not in self.panels:
            self.panels.append(panel)
        panel.group = self

    def merge(self, other: "LinkGroup") -> None:
        """Move every panel of ``other`` into this group."""
        if other is self:
            return
        for panel in list(other.panels):
            self.add(panel)
        other.panels.clear()

    def fit_all(self) -> None:
        """Back to fitted: each panel shows its whole image, now and after resizes."""
        self.fitted = True
        self._busy = True
        try:
            for panel in self.panels:
                panel.fit()
        finally:
            self._busy = False

    def panel_loaded(self, panel) -> None:
        """A panel got an image of a new shape: fit it, or show the region the others show."""
        if self.fitted:
            self._fit_one(panel)
            return
        source = next((p for p in self.panels if p is not panel and p.data is not None), None)
        if source is None:
            self._fit_one(panel)
        else:
            self._busy = True
            try:
                panel.plot.vb.setRange(rect=source.plot.vb.targetRect(), padding=0)
            finally:
                self._busy = False

    def resized(self, panel) -> None:
        if self.fitted and not self._busy:
            self._fit_one(panel)

    def moved_by_user(self, panel) -> None:
        """The user panned or zoomed ``panel``: the others show the region it asked for."""
        if self._busy:
            return
        self.fitted = False
        region = panel.plot.vb.targetRect()
        self._busy = True
        try:
            for other in self.panels:
                if other is not panel:
                    other.plot.vb.setRange(rect=region, padding=0)
        finally:
            self._busy = False

    def _fit_one(self, panel) -> None:
        self._busy = True
        try:
            panel.fit()
        finally:
            self._busy = False
