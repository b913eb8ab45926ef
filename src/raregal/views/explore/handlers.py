"""Plain HTTP endpoints beside the Bokeh app: thumbnails, CSV exports, VOTables for SAMP and the guided
search's ranked candidates (tornado handlers).

A malformed request (a size that is not a number, a row or cluster that does not exist) gets a
4xx answer with the reason, never a 500 with a traceback in the log.
"""

from __future__ import annotations


from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler

from raregal.atomic import safe_file_name


class _Base(RequestHandler):
    def initialize(self, data):
        self.data = data


#: Thumbnail sizes (px) ``/thumb/<row>?s=`` serves.
SIZES = (16, 512)


def _size(text: str) -> int:
    """The ``s`` parameter of ``/thumb``: a whole number of pixels in :data:`SIZES`, else HTTP 400."""
    lo, hi = SIZES
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and lo <= int(text) <= hi):
        raise HTTPError(400, reason=f"s must be a whole number of pixels, {lo}..{hi}")
    return int(text)


def _number(text: str, what: str) -> int:
    """A row or cluster number from the URL (digits, by the route's pattern); HTTP 404 past int64."""
    if len(text.lstrip("-")) > 18:  # no such row or cluster; int() would also refuse > 4300 digits
        raise HTTPError(404, reason=f"no {what} {text[:24]}...")
    return int(text)


class ThumbHandler(_Base):
    """``GET /thumb/<row>?s=<px>``: JPEG of the galaxy's image (placeholder when unreadable)."""

    async def get(self, row):
        size = _size(self.get_argument("s", "96"))
        row = _number(row, "galaxy")
        if not 0 <= row < self.data.n_all:  # the map's galaxies, and filtered ones shown as look-alikes
            raise HTTPError(404, reason=f"no galaxy {row}")
        body = await IOLoop.current().run_in_executor(None, self.data.thumbnail, row, size)
        self.set_header("Content-Type", "image/jpeg")
        self.set_header("Cache-Control", "max-age=3600")
        self.write(body)


def _send_csv(handler, frame, name):
    handler.set_header("Content-Type", "text/csv; charset=utf-8")
    handler.set_header("Content-Disposition", f'attachment; filename="{safe_file_name(name)}"')
    handler.write(frame.to_csv(index=False))


class ExportHandler(_Base):
    """``GET /export/<token>.csv``: the galaxies of a lasso selection."""

    def get(self, token):
        table = self.data.selection_table(token)
        if table is None:
            raise HTTPError(404, reason="unknown or expired selection")
        _send_csv(self, table, f"selection_{token}.csv")


class VOTableHandler(_Base):
    """``GET /votable/<token>.vot``: a remembered selection or cluster as VOTable, for SAMP applications.

    The URL goes to TOPCAT, Aladin, ... in a ``table.load.votable`` message (:mod:`raregal.views.explore.sampbar`);
    they fetch it from here, on this machine.
    """

    async def get(self, token):
        body = await IOLoop.current().run_in_executor(None, self.data.votable, token)
        if body is None:
            raise HTTPError(404, reason="unknown or expired selection")
        name = self.data.selection_names.get(token, "selection")
        self.set_header("Content-Type", "application/x-votable+xml")
        self.set_header("Content-Disposition", f'inline; filename="{safe_file_name(name)}.vot"')
        self.write(body)


class ClusterHandler(_Base):
    """``GET /cluster/<k>.csv``: a cluster's members, most confident first."""

    def get(self, k):
        k = _number(k, "cluster")
        rows = self.data.members(k)
        if not len(rows):
            raise HTTPError(404, reason=f"no cluster {k}")
        _send_csv(self, self.data.rows_table(rows), f"cluster_{k}.csv")


#: Most unlabelled candidates ``/guided/<class>.csv?top=`` gives.
TOP_MAX = 100_000


def _top(text: str) -> int:
    """The ``top`` parameter of ``/guided``: how many unlabelled candidates, 1..:data:`TOP_MAX`, else HTTP 400."""
    if not (text.isascii() and text.isdigit() and len(text) <= 6 and 1 <= int(text) <= TOP_MAX):
        raise HTTPError(400, reason=f"top must be a whole number of galaxies, 1..{TOP_MAX}")
    return int(text)


class GuidedHandler(_Base):
    """``GET /guided/<class>.csv`` (or ``.fits``) ``?top=N``: the class's labelled members and the guided
    search's ``N`` (default 200) best unlabelled galaxies, ranked (:meth:`raregal.views.explore.labelling.Guide.candidates`).

    ``<class>`` is the URL-encoded class name (tornado decodes it); a class with no labels in
    labels.parquet is a 404, one without a member a 409; the file name is made of safe characters only.
    """

    async def get(self, name, fmt):
        from raregal.errors import InputError
        from raregal.views.explore.labelling import check_class_name, fits_bytes

        guide, top = self.data.guide, _top(self.get_argument("top", "200"))
        try:
            name = check_class_name(name)
            known = guide.classes()
        except InputError:
            raise HTTPError(404, reason="no such class") from None
        if name not in known:
            raise HTTPError(404, reason="no labels of that class")
        try:
            frame = await IOLoop.current().run_in_executor(None, guide.candidates, name, top)
        except InputError:
            raise HTTPError(409, reason="no ranked candidates for that class (label a member first)") from None
        file_name = f"guided_{safe_file_name(name)}"
        if fmt == "csv":
            _send_csv(self, frame, f"{file_name}.csv")
            return
        body = await IOLoop.current().run_in_executor(None, fits_bytes, frame, name)
        self.set_header("Content-Type", "application/fits")
        self.set_header("Content-Disposition", f'attachment; filename="{file_name}.fits"')
        self.write(body)


def patterns(data) -> list[tuple]:
    """Tornado URL patterns for the Bokeh server's ``extra_patterns``."""
    kw = {"data": data}
    return [(r"/thumb/(\d+)", ThumbHandler, kw), (r"/export/([0-9a-f]+)\.csv", ExportHandler, kw),
            (r"/cluster/(-?\d+)\.csv", ClusterHandler, kw), (r"/votable/([0-9a-f]+)\.vot", VOTableHandler, kw),
            (r"/guided/([^/]{1,1000})\.(csv|fits)", GuidedHandler, kw)]
