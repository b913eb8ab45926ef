"""raregal cutouts against a local cutout server on 127.0.0.1 (never the real service).

The server answers the Legacy Surveys' URL form. What it does is chosen by the galaxy's ``ra``
(see :data:`CUES`): a cutout (JPEG made from the same g, r, z cube as the FITS, by
:func:`raregal.images.colour.grz_to_rgb`), a 503 before succeeding, a hang longer than the client's
timeout, an HTML error page, a 404, a blank image.
"""

from __future__ import annotations

import io
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from raregal.cli import main
from raregal.images.colour import grz_to_rgb
from raregal.inputs.cutouts import check_service, cutout_url, fetch_cutouts, file_loc, sky_problems
from raregal.errors import InputError

#: ra -> what the server does for that galaxy (any other ra: a good cutout).
CUES = {1.0: "flaky", 2.0: "hang", 3.0: "html", 4.0: "missing", 5.0: "blank"}
FAST = {"timeout": 0.5, "retries": 1, "backoff": 0.01, "workers": 3, "progress": False}


def galaxy_cube(ra: float, dec: float, size: int, pixscale: float) -> np.ndarray:
    """A seeded (3, size, size) g, r, z cube in nanomaggies: an elliptical red bulge in a bluer disc, plus noise."""
    rng = np.random.default_rng(int(ra * 1000 + dec * 10) % 2**32)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r2 = (xx / 1.6) ** 2 + (yy - size / 10) ** 2
    disc, bulge = np.exp(-np.sqrt(r2) / (size / 8)), np.exp(-r2 / (size / 14) ** 2)
    cube = np.stack([1.2 * disc + 0.5 * bulge, 1.0 * disc + 1.0 * bulge, 0.8 * disc + 2.0 * bulge]) * 3 * pixscale
    return (cube + rng.normal(0, 0.003, cube.shape)).astype(np.float32)


def fits_bytes(cube: np.ndarray, pixscale: float) -> bytes:
    from astropy.io import fits

    hdu = fits.PrimaryHDU(cube)
    hdu.header.update({"BANDS": "grz", "BAND0": "g", "BAND1": "r", "BAND2": "z", "CTYPE1": "RA---TAN",
                       "CTYPE2": "DEC--TAN", "CD1_1": -pixscale / 3600, "CD2_2": pixscale / 3600,
                       "CD1_2": 0.0, "CD2_1": 0.0})
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95)
    return buf.getvalue()


class CutoutServer:
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) in a thread, counting requests per ra and in flight."""

    def __init__(self):
        self.hits: dict[float, int] = {}
        self.in_flight = self.max_in_flight = 0  # requests the client still waits for (hung ones it gave up on
        jpeg_bytes(grz_to_rgb(galaxy_cube(0, 0, 8, 0.262), 0.262))  # are not counted); import astropy first
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_GET(self):
                counted = "ra=2.0" not in self.path  # the hang cue: the client stops waiting after its timeout
                with outer.lock:
                    outer.in_flight += counted
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    outer.answer(self)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (the hang cue)
                    pass
                finally:
                    with outer.lock:
                        outer.in_flight -= counted

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        port = self.server.server_address[1]
        self.template = (f"http://127.0.0.1:{port}/cutout.{{format}}?ra={{ra}}&dec={{dec}}&layer={{layer}}"
                         f"&pixscale={{pixscale}}&size={{size}}")

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(h.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        ra, dec, size, pixscale = float(q["ra"]), float(q["dec"]), int(q["size"]), float(q["pixscale"])
        with self.lock:
            n = self.hits[ra] = self.hits.get(ra, 0) + 1
        cue = CUES.get(ra)
        time.sleep(0.02)  # long enough for requests to overlap
        if cue == "flaky" and n == 1 or cue == "missing":
            code = 503 if cue == "flaky" else 404
            return self.send(h, code, b"<html><title>try later</title></html>", "text/html")
        if cue == "hang":
            time.sleep(1.5)
        if cue == "html":
            return self.send(h, 200, b"<!DOCTYPE html><html><head><title>Cutout service is down for "
                             b"maintenance</title></head><body>sorry</body></html>", "text/html; charset=utf-8")
        cube = galaxy_cube(ra, dec, size, pixscale)
        if cue == "blank":
            cube[:] = 0.0
        if url.path.endswith(".fits"):
            return self.send(h, 200, fits_bytes(cube, pixscale), "image/fits")
        self.send(h, 200, jpeg_bytes(grz_to_rgb(cube, pixscale)[::-1]), "image/jpeg")

    @staticmethod
    def send(h, code: int, body: bytes, ctype: str) -> None:
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    srv = CutoutServer()
    yield srv
    srv.close()


def sky_catalog(path, hang: bool = True):
    """Six good galaxies (ra 10..15), one per cue (the hang only if ``hang``), and rows with impossible coordinates."""
    rows = [{"id_str": f"good{i}", "ra": 10.0 + i, "dec": -5.0 + i, "mag_r": 17.0 + i / 10} for i in range(6)]
    rows += [{"id_str": cue, "ra": ra, "dec": 2.0, "mag_r": 18.0} for ra, cue in CUES.items() if hang or cue != "hang"]
    rows += [{"id_str": "ra400", "ra": 400.0, "dec": 0.0, "mag_r": 18.0},
             {"id_str": "decm95", "ra": 20.0, "dec": -95.0, "mag_r": 18.0},
             {"id_str": "nopos", "ra": np.nan, "dec": 1.0, "mag_r": 18.0}]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_fetch_lists_each_failure_by_id_and_writes_a_catalog_embed_reads(server, tmp_path):
    from raregal.inputs.tables import image_sources, read_catalog
    from raregal.images.dataset import load_image

    cat = sky_catalog(tmp_path / "sky.csv")
    out = tmp_path / "cutouts"
    s = fetch_cutouts(cat, out, service=server.template, size=32, **FAST)
    assert (s["n_input"], s["n_cutouts"], s["n_failed"]) == (14, 7, 7)  # 6 good + the flaky one
    assert server.hits[1.0] == 2  # a 503, then the retry succeeded
    assert server.max_in_flight <= FAST["workers"]
    failed = pd.read_csv(out / "failed.csv").set_index("id_str")
    assert list(failed.columns) == ["ra", "dec", "reason"]
    reasons = failed["reason"].to_dict()
    assert "timed out" in reasons["hang"] and "2 tries" in reasons["hang"]
    assert "HTML page" in reasons["html"] and "down for maintenance" in reasons["html"]
    assert "HTTP 404" in reasons["missing"] and "tries" not in reasons["missing"]  # a 404 is not retried
    assert "blank" in reasons["blank"]
    assert "outside [0, 360)" in reasons["ra400"] and "outside [-90, 90]" in reasons["decm95"]
    assert "ra is missing" in reasons["nopos"]
    assert 400.0 not in server.hits and 20.0 not in server.hits  # impossible positions are never requested
    # the catalog: input order, relative file_loc, the input's other columns carried; embed reads it
    table = read_catalog(out / "catalog.parquet")
    assert table["id_str"].tolist() == [f"good{i}" for i in range(6)] + ["flaky"]
    assert list(table.columns) == ["id_str", "file_loc", "ra", "dec", "mag_r"]
    assert pd.read_parquet(out / "catalog.parquet")["file_loc"].iloc[0] == file_loc("good0", "jpg")
    images = [load_image(src) for src in image_sources(table)]
    assert all(im.shape == (3, 32, 32) for im in images)
    assert not list(out.rglob(".*.jpg"))  # no temporary files left behind


def test_rerun_resumes_settings_are_kept_and_overwrite_starts_over(server, tmp_path):
    cat = sky_catalog(tmp_path / "sky.csv", hang=False)
    out = tmp_path / "cutouts"
    fetch_cutouts(cat, out, service=server.template, size=32, **FAST)
    before = dict(server.hits)
    (out / file_loc("good2", "jpg")).unlink()  # as if the run had been stopped before this one
    s = fetch_cutouts(cat, out, service=server.template, size=32, **FAST)
    assert server.hits[12.0] == before[12.0] + 1  # fetched again
    assert all(server.hits[10.0 + i] == before[10.0 + i] for i in (0, 1, 3, 4, 5))  # not fetched again
    assert server.hits[3.0] == before[3.0] + 1  # failures are retried
    assert (s["n_cutouts"], s["n_already_there"], s["n_fetched"]) == (7, 6, 1)
    with pytest.raises(InputError, match="other settings") as err:
        fetch_cutouts(cat, out, service=server.template, size=48, **FAST)
    assert err.value.param == ("out_dir", "overwrite")
    s = fetch_cutouts(cat, out, service=server.template, size=48, overwrite=True, **FAST)
    assert s["n_already_there"] == 0 and s["n_cutouts"] == 7


def test_fits_cutouts_embed_as_the_colour_picture_of_the_jpeg(server, tmp_path):
    """A (g, r, z) FITS cutout and the JPEG cutout of the same galaxy give the model the same picture."""
    from torch.nn.functional import avg_pool2d

    from raregal.images.dataset import load_image
    from raregal.views.report.thumbs import load_preview

    cat = tmp_path / "sky.csv"  # RA/DEC in capitals are read as ra/dec, as everywhere in raregal
    pd.DataFrame({"id_str": ["a", "b"], "RA": [10.0, 11.0], "DEC": [0.0, 1.0]}).to_csv(cat, index=False)
    for fmt in ("jpg", "fits"):
        fetch_cutouts(cat, tmp_path / fmt, service=server.template, size=48, fmt=fmt, **FAST)
    for gid in ("a", "b"):
        jpg = load_image(tmp_path / "jpg" / file_loc(gid, "jpg"))
        fits = load_image(tmp_path / "fits" / file_loc(gid, "fits"))
        assert fits.shape == jpg.shape == (3, 48, 48)
        # JPEG compression (of the noise, mostly) is the only difference
        assert float((fits - jpg).abs().mean()) < 0.015
        assert float((avg_pool2d(fits, 4) - avg_pool2d(jpg, 4)).abs().max()) < 0.03
        assert float((fits[0] - fits[2]).abs().mean()) > 0.05  # colour, not one band repeated
        thumb = np.asarray(load_preview(tmp_path / "fits" / file_loc(gid, "fits"), 48)[0], float) / 255
        assert np.abs(thumb - jpg.permute(1, 2, 0).numpy()).mean() < 0.02  # thumbnails show that picture too


def test_bad_settings_name_the_parameter_before_any_request(server, tmp_path):
    cat = sky_catalog(tmp_path / "sky.csv")
    for kw, param in (({"service": "http://127.0.0.1/cutout?ra={ra}"}, "service"),
                      ({"service": "http://127.0.0.1/cutout?ra={ra}&dec={dec}&z={zoom}"}, "service"),
                      ({"service": "file:///etc/passwd?{ra}{dec}"}, "service"),
                      ({"size": 0}, "size"), ({"fmt": "png"}, "fmt"), ({"pixscale": -1.0}, "pixscale"),
                      ({"workers": 0}, "workers"), ({"layer": "ls dr10&x=1"}, "layer")):
        with pytest.raises(InputError) as err:
            fetch_cutouts(cat, tmp_path / "o", **{"service": server.template, **FAST, **kw})
        assert err.value.param == param
    assert not server.hits and not (tmp_path / "o").exists()
    pd.DataFrame({"id_str": ["a"], "RAJ2000": [1.0], "dec": [2.0]}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(InputError, match="no column 'ra'.*the catalog has id_str, RAJ2000, dec"):
        fetch_cutouts(tmp_path / "other.csv", tmp_path / "o", service=server.template, **FAST)
    pd.DataFrame({"id_str": ["a"], "ra": ["12:30:00"], "dec": [2.0]}).to_csv(tmp_path / "sexa.csv", index=False)
    with pytest.raises(InputError, match="not numbers of degrees"):
        fetch_cutouts(tmp_path / "sexa.csv", tmp_path / "o", service=server.template, **FAST)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my notes")
    with pytest.raises(InputError, match="raregal did not write"):
        fetch_cutouts(cat, tmp_path / "mine", service=server.template, **FAST)


def test_an_unreachable_service_stops_the_run_with_one_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cat = sky_catalog(tmp_path / "sky.csv")
    with pytest.raises(InputError, match="could connect") as err:
        fetch_cutouts(cat, tmp_path / "o", service=f"http://127.0.0.1:{port}/c.jpg?ra={{ra}}&dec={{dec}}", **FAST)
    assert err.value.param == "service"


def test_cli(server, tmp_path, capsys):
    cat = sky_catalog(tmp_path / "sky.csv", hang=False)
    out = tmp_path / "cut"
    args = ["cutouts", str(cat), "--out", str(out), "--service", server.template, "--size", "24", "--workers", "2",
            "--timeout", "0.5", "--retries", "1", "--backoff", "0.01", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "7 of 13 galaxies have a cutout (7 fetched now, 0 already there)" in text
    assert str((out / "failed.csv").resolve()) in text and "6 galaxies" in text
    assert main(args[:-1] + ["--format", "fits", "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err  # the folder holds JPEG cutouts: the flag is named
    assert main(["cutouts", str(cat), "--out", str(tmp_path / "x"), "--service", "http://h/{ra}"]) == 2
    assert "--service" in capsys.readouterr().err


def test_urls_and_names():
    url = cutout_url(check_service(None), 14.2118495, -1.0270897, "ls-dr10", 0.262, 256, "fits")
    assert url == ("https://www.legacysurvey.org/viewer/cutout.fits?ra=14.2118495&dec=-1.0270897&layer=ls-dr10"
                   "&pixscale=0.262&size=256&bands=grz")
    assert cutout_url(check_service(None), 1, 2, "ls-dr9", 0.524, 64, "jpg").endswith("pixscale=0.524&size=64")
    assert file_loc("J005650.84-010137.4", "jpg").endswith("/J005650.84-010137.4.jpg")
    assert file_loc("<a/b>", "jpg") != file_loc("<a_b>", "jpg") and "/" not in file_loc("../x", "jpg")[10:]
    assert list(sky_problems([0.0, 359.999, 360.0, -0.1, 1.0], [90.0, -90.0, 0.0, 0.0, 90.1])) == [
        "", "", "ra 360 is outside [0, 360) degrees", "ra -0.1 is outside [0, 360) degrees",
        "dec 90.1 is outside [-90, 90] degrees"]
