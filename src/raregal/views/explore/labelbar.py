"""The explorer's labelling widgets: the class being taught, member / not buttons for the picked galaxy
and the shown cluster, and the guided search's "next to label" strip (the Guided tab).

Every click is written to ``RUN_DIR/labels.parquet`` at once (:class:`~raregal.views.explore.labelling.Guide`
over :class:`~raregal.guided.LabelStore`) and what the widgets show is what the file holds after the
write, so nothing lives only in one browser tab. The strip is proposed anew when the Guided tab is
opened after labels changed elsewhere, on "Next batch", on a change of class, and as soon as every
galaxy it shows has a label. In a served document the guided search is fitted in a thread (the
server keeps answering) and the strip is filled on the next tick; without a server (tests, scripts)
everything happens in the callback.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from raregal.errors import InputError
from raregal.views.explore import panels
from raregal.views.explore.labelling import BATCH, DEFAULT_CLASS, MEMBER, NOT, TOP, check_class_name

log = logging.getLogger("raregal")

#: The Guided tab's position among the side tabs (Cluster, Galaxy, Selection, Guided).
GUIDED_TAB = 3


def _button(label: str, name: str, width: int, kind: str = "default", margin=5):
    from bokeh.models import Button

    return Button(label=label, name=name, width=width, button_type=kind, css_classes=[f"rg-{name}"], margin=margin)


class LabelBar:
    """One browser tab's labelling widgets and callbacks for ``data`` (an ExplorerData).

    ``current`` is the session's dict (``row``: the picked galaxy, ``cluster``: the shown cluster);
    ``on_labels(table, class_name)`` is called with every label of the run after each change (the
    map's layer of labelled galaxies).
    """

    def __init__(self, doc, data, current: dict, on_labels=None, base_url: str | None = None, n: int = BATCH):
        from bokeh.models import InlineStyleSheet, Select, TextInput

        self.doc, self.data, self.guide, self.current = doc, data, data.guide, current
        self.on_labels, self.base_url = on_labels or (lambda table, name: None), base_url
        self.threaded = doc is not None and getattr(doc, "session_context", None) is not None
        self.sheet = InlineStyleSheet(css=panels.CSS)
        self.message = self._div("label_message", 560)
        table = self._read()
        classes = self.guide.classes(table) if table is not None else []
        self.class_name = classes[0] if classes else DEFAULT_CLASS
        self.select = Select(title="Class being labelled", value=self.class_name, width=190, name="label_class",
                             options=list(dict.fromkeys(classes + [self.class_name])))
        self.new = TextInput(title="New class", placeholder="name, then Enter", width=170,
                             name="label_new_class")
        self.counts = self._div("label_counts", 200)
        self.galaxy = {"state": self._div("galaxy_label", 290), MEMBER: _button("member", "galaxy-member", 85),
                       NOT: _button("not", "galaxy-not", 60), None: _button("forget", "galaxy-forget", 70)}
        self.cluster = {"state": self._div("cluster_label", 290), MEMBER: _button("all member", "cluster-member", 95),
                        NOT: _button("all not", "cluster-not", 70), None: _button("forget", "cluster-forget", 70)}
        self.header = self._div("guided_header", 560)
        self.next = _button("Next batch", "guided-next", 110, "primary")
        self.samp = _button("Send candidates to SAMP", "guided-samp", 200) if base_url is not None else None
        self.slots = [self._slot(i) for i in range(n)]
        self.strip_rows = np.zeros(0, np.int64)
        self.strip_scores = np.zeros(0)
        self.stale, self.tab_active, self._asked = True, False, 0
        self._connect()
        self.refresh(table)
        self._fill(None, "Open this tab after labelling a member (Galaxy or Cluster tab) to get proposals.")

    # ---- widgets -----------------------------------------------------------------------------
    def _div(self, name: str, width: int):
        from bokeh.models import Div

        return Div(text="", name=name, width=width, stylesheets=[self.sheet])

    def _slot(self, i: int) -> dict:
        tile = self._div(f"guided_tile_{i}", 104)
        return {"tile": tile, MEMBER: _button("member", f"slot-member-{i}", 62, margin=(0, 1, 8, 1)),
                NOT: _button("not", f"slot-not-{i}", 40, margin=(0, 1, 8, 1))}

    def class_controls(self):
        """The class chooser, the new-class box and the counts, in one row."""
        from bokeh.layouts import row

        return row(self.select, self.new, self.counts, name="label_controls")

    def galaxy_controls(self):
        """The picked galaxy's label and its member / not / forget buttons."""
        from bokeh.layouts import row

        return row(self.galaxy["state"], self.galaxy[MEMBER], self.galaxy[NOT], self.galaxy[None])

    def cluster_controls(self):
        """The shown cluster's labels and the buttons that label all its members."""
        from bokeh.layouts import row

        return row(self.cluster["state"], self.cluster[MEMBER], self.cluster[NOT], self.cluster[None])

    def guided_panel(self):
        """The Guided tab: heading with the export links, Next batch (and SAMP), the strip of slots, messages."""
        from bokeh.layouts import column, row

        slots = [column(s["tile"], row(s[MEMBER], s[NOT]), width=108) for s in self.slots]
        buttons = [self.next] + ([self.samp] if self.samp is not None else [])
        return column(self.header, row(*buttons), *[row(*slots[i:i + 5]) for i in range(0, len(slots), 5)],
                      self.message, name="guided_panel")

    def _connect(self) -> None:
        self.select.on_change("value", lambda attr, old, new: self.set_class(new))
        self.new.on_change("value", lambda attr, old, new: self.set_class(new) if new.strip() else None)
        for label in (MEMBER, NOT, None):
            self.galaxy[label].on_click(lambda label=label: self.label_galaxy(label))
            self.cluster[label].on_click(lambda label=label: self.label_cluster(label))
        for i, slot in enumerate(self.slots):
            for label in (MEMBER, NOT):
                slot[label].on_click(lambda i=i, label=label: self.label_slot(i, label))
        self.next.on_click(self.refresh_strip)
        if self.samp is not None:
            self.samp.on_click(self.send_samp)

    # ---- reading and writing labels ----------------------------------------------------------
    def _read(self):
        """Every label of the run, read now; None (and the reason shown) when labels.parquet is unreadable."""
        try:
            return self.guide.table()
        except InputError as err:
            self.message.text = f'<div class="rg">{panels.escape(str(err))}</div>'
            return None

    def _write(self, rows, label) -> bool:
        """Label ``rows`` in the current class in labels.parquet, then show what the file holds; False on failure."""
        try:
            table = self.guide.set(self.class_name, rows, label)
        except (InputError, OSError) as err:
            log.warning("explore: labels not saved: %s", err)
            self.message.text = f'<div class="rg"><b>Not saved:</b> {panels.escape(str(err))}</div>'
            return False
        self.message.text = ""
        self.refresh(table)
        return True

    def label_galaxy(self, label) -> None:
        """Label the picked galaxy (1 member, 0 not, None forget)."""
        row = self.current.get("row")
        if row is not None and self._write([row], label):
            self.stale = True

    def label_cluster(self, label) -> None:
        """Label every member of the shown cluster (1 member, 0 not, None forget)."""
        k = self.current.get("cluster")
        if k is not None and self._write(self.data.members(k), label):
            self.stale = True

    def label_slot(self, i: int, label: int) -> None:
        """Label the strip's galaxy ``i``; a new strip once every galaxy shown has a label."""
        if i >= len(self.strip_rows) or not self._write([self.strip_rows[i]], label):
            return
        table = self._read()
        if table is not None and (self.guide.of_rows(self.class_name, self.strip_rows, table) >= 0).all():
            self.refresh_strip()

    def set_class(self, name: str) -> None:
        """Make ``name`` the class being labelled (a new one is added to the chooser)."""
        try:
            name = check_class_name(name)
        except InputError as err:
            self.message.text = f'<div class="rg">{panels.escape(str(err))}</div>'
            return
        self.new.value = ""
        if name == self.class_name:
            return
        if name not in self.select.options:
            self.select.options = list(self.select.options) + [name]
        self.class_name, self.stale = name, True
        self.select.value = name  # its callback comes back here and returns at once
        self.refresh()
        if self.tab_active:
            self.refresh_strip()

    # ---- what is shown -----------------------------------------------------------------------
    def refresh(self, table=None) -> None:
        """Counts, the picked galaxy's and shown cluster's labels, the strip's marks and the map, from ``table``
        (every label of the run; read now when None)."""
        table = self._read() if table is None else table
        if table is None:
            return
        off = self.guide.off
        name, guide = self.class_name, self.guide
        self.counts.text = panels.class_counts(name, *guide.counts(name, table), off)
        options = list(dict.fromkeys(list(self.select.options) + guide.classes(table)))
        if options != list(self.select.options):  # classes named in other tabs
            self.select.options = options
        for buttons, what in ((self.galaxy, "row"), (self.cluster, "cluster")):
            for label in (MEMBER, NOT, None):
                buttons[label].disabled = bool(off) or self.current.get(what) is None
        self._show_galaxy_label(table)
        self._show_cluster_label(table)
        self._mark_slots(table)
        self.on_labels(table, name)

    def _show_galaxy_label(self, table) -> None:
        row = self.current.get("row")
        if row is None:
            self.galaxy["state"].text = '<div class="rg muted">Click a galaxy to label it.</div>'
            return
        label = int(self.guide.of_rows(self.class_name, [row], table)[0])
        self.galaxy["state"].text = panels.galaxy_label(self.data.all_ids[row], self.class_name, label)
        for value, word, kind in ((MEMBER, "member", "success"), (NOT, "not", "danger")):
            self.galaxy[value].label = ("\u2713 " if label == value else "") + word
            self.galaxy[value].button_type = kind if label == value else "default"

    def _show_cluster_label(self, table) -> None:
        k = self.current.get("cluster")
        if k is None:
            self.cluster["state"].text = '<div class="rg muted">Pick a cluster to label all its members.</div>'
            return
        rows = self.data.members(k)
        got = self.guide.of_rows(self.class_name, rows, table)
        self.cluster["state"].text = panels.cluster_label(k, len(rows), int((got == MEMBER).sum()),
                                                          int((got == NOT).sum()), self.class_name)

    def _mark_slots(self, table) -> None:
        """Each slot of the strip: its tile with the galaxy's label now, and its buttons (hidden when empty)."""
        rows = self.strip_rows
        got = self.guide.of_rows(self.class_name, rows, table) if len(rows) else np.zeros(0, np.int8)
        scores = self.strip_scores
        for i, slot in enumerate(self.slots):
            shown = i < len(rows)
            slot["tile"].visible = slot[MEMBER].visible = slot[NOT].visible = shown
            if not shown:
                slot["tile"].text = ""
                continue
            slot["tile"].text = panels.strip_tile(self.data, int(rows[i]), float(scores[i]), int(got[i]))
            slot[MEMBER].button_type = "success" if got[i] == MEMBER else "default"
            slot[NOT].button_type = "danger" if got[i] == NOT else "default"

    # ---- the guided search's strip -----------------------------------------------------------
    def on_tab(self, active: int) -> None:
        """The side tabs changed: a new strip when the Guided tab opens on changed labels."""
        self.tab_active = active == GUIDED_TAB
        if self.tab_active and self.stale:
            self.refresh_strip()

    def _propose(self, name: str):
        """(proposals or None, message) for class ``name`` from the labels now (numeric work; no widgets)."""
        if self.guide.guide_off:
            return None, f"The guided search is off: {self.guide.guide_off}"
        try:
            return self.guide.proposals(name, len(self.slots)), ""
        except InputError as err:
            if not self.guide.counts(name)[0]:
                return None, "Label at least one member of this class (Galaxy or Cluster tab) to get proposals."
            return None, str(err)

    def refresh_strip(self) -> None:
        """Propose the next galaxies to label for the current class and show them."""
        self._asked += 1
        name, asked = self.class_name, self._asked
        self.stale = False
        if not self.threaded:
            self._fill(*self._propose(name))
            return
        self.next.disabled = True
        self.header.text = panels.guided_header(name, 0, "Finding the next galaxies to show\u2026", False)

        def work():
            try:
                got = self._propose(name)
            except Exception as err:  # noqa: BLE001 - the page gets a line, the log the traceback
                log.exception("explore: guided search failed")
                got = None, f"The guided search failed: {err}"
            try:
                self.doc.add_next_tick_callback(lambda: self._fill(*got, asked=asked, name=name))
            except Exception as err:  # noqa: BLE001 - the tab was closed meanwhile
                log.debug("explore: strip not shown: %s", err)

        threading.Thread(target=work, name="raregal-guided", daemon=True).start()

    def _fill(self, proposals, message: str, asked: int | None = None, name: str | None = None) -> None:
        """Show ``proposals`` (``row``, ``id_str``, ``score``; None: none) in the strip; a late answer to an
        earlier question, or for another class, is dropped."""
        if asked is not None and (asked != self._asked or name != self.class_name):
            return
        self.next.disabled = False
        if proposals is None or not len(proposals):
            self.strip_rows, self.strip_scores = np.zeros(0, np.int64), np.zeros(0)
        else:
            self.strip_rows = proposals["row"].to_numpy(np.int64)
            self.strip_scores = proposals["score"].to_numpy(np.float64)
        if proposals is not None and not len(proposals):
            message = "Every galaxy is labelled already."
        self.header.text = panels.guided_header(self.class_name, len(self.strip_rows), message,
                                                len(self.strip_rows) > 0)
        table = self._read()
        if table is not None:
            self._mark_slots(table)

    def candidates(self):
        """(explorer rows, table) of the current class's ranked candidates (:meth:`Guide.candidates`)."""
        frame = self.guide.candidates(self.class_name, TOP)
        return self.guide.rows_of(frame["id_str"]), frame

    def send_samp(self) -> None:
        """Send the ranked candidates of the current class to SAMP applications (in a thread)."""
        from raregal.views.explore.sampbar import _in_thread, send_rows

        name, run = self.class_name, self.data.run.path.resolve().name

        def work():
            try:
                rows, frame = self.candidates()
            except InputError as err:
                return f"Nothing to send: {err}"
            return send_rows(self.data, rows, f"{run} {name} candidates", self.base_url, frame=frame)

        _in_thread(self.doc, self.message, f"Sending the candidates of {name} over SAMP\u2026", work)
