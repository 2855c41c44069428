"""End to end in a real browser: Debian's chromium driven by Playwright against `streamlit run app.py`.

Uploads a small phantom with its label, runs a two-point job (DMIC vs HEVC; HEVC vs a hand-crafted
map when no trained agents are shipped), and checks the curve and the comparison. Screenshots go
to ``test-artifacts/`` (git-ignored), kept as CI artifacts.

Every step waits for a state of the page (a page's title shown, the app's script run over, an
element visible, the job's card saying done), never for a fixed time; each wait's deadline is a
base number of seconds scaled by ``$DMIC_TEST_SLOWDOWN`` (``tests/polling.py``), so a busy machine
only makes the test slower, not red.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared polling helper
from polling import scaled, scaled_ms, wait_for  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(scaled(240))]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
#: Base seconds for one page step (a page's run, an upload's decoding and first views).
STEP_S = 30
#: Base seconds for the two-point job to finish.
JOB_S = 120

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # pragma: no cover
    pytest.skip("Debian's chromium is not installed (scripts/setup.sh --with-test-tools)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    from dmic_core.datasets.phantom import generate_phantom
    from dmic_core.io import save_nifti

    from dmic_core.evaluation.case import load_case
    from dmic_core.maps import foreground_ctus

    folder = tmp_path_factory.mktemp("phantom")
    volume, label = generate_phantom(12, n_slices=12, size=128)
    image = save_nifti(volume, volume.hu, folder / "phantom.nii.gz")
    mask = save_nifti(volume, label.astype("uint8"), folder / "phantom_label.nii.gz")
    # the Compare page's QP-offset map needs CTUs both inside and outside the model's mask on every
    # frame: a DMIC map that protects every CTU of a frame sets no offsets there to draw
    fg = foreground_ctus(load_case(image, mask).reference.roi).reshape(12, -1)
    assert fg.any(axis=1).all() and (~fg).any(axis=1).all(), fg.sum(axis=1)
    return image, mask


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("workspaces")
    port = _free_port()
    env = {**os.environ, "DMIC_WORKSPACE_ROOT": str(root), "DMIC_JOB_WORKERS": "1"}
    # The server's output goes to a file, never to a pipe nobody reads: once a pipe's buffer
    # (64 KiB) is full the server blocks on its next log line and stops answering (a fresh-clone
    # run timed out on every page load after the first two flows had filled it).
    server_log = open(tmp_path_factory.mktemp("server") / "streamlit.log", "w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            server_log.seek(0)
            raise AssertionError("streamlit exited: " + server_log.read().decode(errors="replace")[-2000:])
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=40, what="the streamlit server to answer", interval=0.3)
    except AssertionError:
        proc.kill()
        raise
    yield url, root
    from dmic_core.jobs import stop_runner

    stop_runner(root / "_jobs", timeout=scaled(15))
    proc.terminate()
    try:
        proc.wait(scaled(10))
    except subprocess.TimeoutExpired:
        proc.kill()
    server_log.close()


DOC_FIGURES = ROOT / "docs" / "figures" / "app"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _shot(page, name: str, doc: str | None = None) -> None:
    """A screenshot into test-artifacts/; with ``doc`` and ``DMIC_DOC_SCREENSHOTS=1`` also the
    documentation's figure ``docs/figures/app/<doc>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"e2e_{name}.png"), full_page=True)
    if doc and os.environ.get("DMIC_DOC_SCREENSHOTS") == "1":
        DOC_FIGURES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOC_FIGURES / f"{doc}.png"), full_page=True)


def _watch_requests(context) -> list[str]:
    """Every URL the browser context requests (Playwright's request log)."""
    seen: list[str] = []
    context.on("request", lambda request: seen.append(request.url))
    return seen


def _outside(urls: list[str]) -> list[str]:
    """Requests that leave the machine: any http(s)/ws(s) host but localhost / 127.0.0.1."""
    from urllib.parse import urlsplit

    return [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")
            and urlsplit(u).hostname not in LOCAL_HOSTS]


def _new_page(browser, url: str | None = None):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    requests = _watch_requests(context)
    page = context.new_page()
    page.set_default_timeout(scaled_ms(STEP_S))
    page.set_default_navigation_timeout(scaled_ms(STEP_S))
    if url:
        page.goto(url)
    return context, page, requests


def _open_home(browser, url: str):
    """A new browser context on the app's home page, drawn and idle: ``(context, page, requests)``."""
    context, page, requests = _new_page(browser, url)
    page.get_by_role("heading", name="DMIC Studio", exact=True).wait_for()
    _wait_idle(page)
    return context, page, requests


def _load_button(page):
    return page.get_by_test_id("stBaseButton-primary").filter(has_text="Load")


def _selection(image: Path, label: Path | None) -> str:
    """How the Upload page names a selection under its Load button."""
    return image.name + (f" with the label {label.name}" if label is not None else " (no label)")


def _upload(page, image: Path, label: Path | None) -> None:
    _nav(page, "Upload & inspect")
    uploads = page.locator('input[type="file"]')
    uploads.nth(0).set_input_files(str(image))
    if label is not None:
        # one file at a time, as a person does: the label is chosen once the image is on the server
        # and its rerun is over (both set back to back, one CI run in many lost the label's upload)
        _ready(page, _selection(image, None))
        _wait_idle(page)
        uploads.nth(1).set_input_files(str(label))
    names = _selection(image, label)
    _ready(page, names)  # both files are on the server
    _load_button(page).click()
    page.get_by_text(f"Loaded: {names}.", exact=False).wait_for()
    page.get_by_text("frames x height x width").wait_for()
    _images_loaded(page, 3)
    _wait_idle(page)


def _plots_drawn(page, count: int) -> None:
    page.wait_for_function(
        "(n) => document.querySelectorAll('[data-testid=stPlotlyChart] .main-svg').length >= n", arg=count)


def _ready(page, names: str) -> None:
    """Until the Upload page offers to load ``names``; on a timeout a screenshot shows what it said."""
    try:
        page.get_by_text(f"Ready to load: {names}.", exact=True).wait_for()
    except playwright_api.TimeoutError:
        _shot(page, "upload_not_ready")
        raise


def _wait_idle(page) -> None:
    """Until the app's script run is over (call it once the run's own output is on the page)."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()


def _nav(page, label: str, title: str | None = None) -> None:
    """Open a page from the sidebar; back once its title is shown and its run is over."""
    page.get_by_test_id("stSidebarNav").get_by_text(label, exact=True).click()
    page.get_by_role("heading", name=title or label, exact=True).wait_for()
    _wait_idle(page)


def _set_multiselect(page, label: str, values: list[str]) -> None:
    expect = playwright_api.expect
    box = page.get_by_test_id("stMultiSelect").filter(has_text=label)
    box.wait_for()
    _wait_idle(page)  # the default chips must be drawn before they are counted and removed
    removes = box.locator('button[aria-label^="Remove"]')
    for left in range(removes.count() - 1, -1, -1):
        removes.first.click()
        expect(removes).to_have_count(left)
    for value in values:
        box.get_by_role("combobox").click()
        page.get_by_role("option", name=value, exact=True).click()
    page.keyboard.press("Escape")
    expect(removes).to_have_count(len(values))


def _images_loaded(page, count: int) -> None:
    """Until at least ``count`` images are on the page and every one has been decoded."""
    page.wait_for_function(
        "(n) => { const imgs = [...document.querySelectorAll('[data-testid=stImage] img')];"
        " return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0); }", arg=count)


def test_upload_job_curve_and_compare(server, phantom_files):
    url, root = server
    image, label = phantom_files
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=scaled_ms(STEP_S))
        context, page, requests = _new_page(browser)
        playwright_api.expect.set_options(timeout=scaled_ms(STEP_S))
        page.goto(url)
        page.get_by_role("heading", name="DMIC Studio", exact=True).wait_for()
        _wait_idle(page)
        _shot(page, "01_home", "home")

        _upload(page, image, label)
        _shot(page, "02_upload", "upload")

        _nav(page, "Compress")
        methods = page.get_by_test_id("stMultiSelect").filter(has_text="Methods").inner_text()
        other = "dmic" if "dmic" in methods else "linear"
        if other != "dmic":  # with the agents shipped, DMIC + HEVC is the page's default selection
            _set_multiselect(page, "Methods", ["hevc", other])
        _set_multiselect(page, "Base QPs", ["32"])
        if other == "dmic":
            _set_multiselect(page, "DMIC λ", ["10.0"])  # "DMIC" alone also matches the Methods box
        page.get_by_test_id("stBaseButton-primaryFormSubmit").filter(has_text="Start job").click()
        try:
            page.get_by_test_id("stExpander").filter(has_text="— done").first.wait_for(timeout=scaled_ms(JOB_S))
        except Exception:
            _shot(page, "03_compress_failed")  # the artifact shows what the page said instead
            raise
        _wait_idle(page)
        _shot(page, "03_compress", "compress")

        page.reload()  # the job survives a reload (same workspace from the URL)
        page.get_by_role("heading", name="Compress", exact=True).wait_for()
        page.get_by_test_id("stExpander").filter(has_text="— done").first.wait_for()
        _wait_idle(page)

        _nav(page, "Curves")
        page.get_by_test_id("stPlotlyChart").first.locator(".main-svg").first.wait_for()
        _shot(page, "04_curves", "curves")

        _nav(page, "Compare")
        page.get_by_text("At the same rate").wait_for()
        _plots_drawn(page, 6)  # three views, QP offsets, two difference maps (+ bits per slice)
        _shot(page, "05_compare", "compare")
        page.wait_for_function(  # the difference maps' and the QP map's colour bars
            "() => { const t = [...document.querySelectorAll('[data-testid=stPlotlyChart] svg text')]"
            ".map(e => e.textContent); return t.includes('ΔHU') && t.includes('ΔQP'); }")

        _nav(page, "Downloads")
        page.get_by_test_id("stDownloadButton").filter(has_text="Bitstream (.hevc)").wait_for()
        _shot(page, "06_downloads", "downloads")
        for _ in range(5):  # each click gives the file (no deferred file dropped by a rerun)
            with page.expect_download() as info:
                page.get_by_test_id("stDownloadButton").filter(has_text="Bitstream (.hevc)").click()
            assert info.value.suggested_filename.endswith(".hevc") and Path(info.value.path()).stat().st_size > 0
            _wait_idle(page)

        _nav(page, "Fine-tune")
        _shot(page, "07_finetune", "finetune")
        browser.close()
    assert requests and not _outside(requests), _outside(requests)


def test_real_ct_with_an_aorta_label_warns_and_sessions_stay_apart(server, phantom_files):
    """The real CT crop with its aorta label, a quick-slab HEVC job of the default four QPs scored by the
    coronary model: the pages warn that label and model describe different structures and give BD a
    reason. Sessions: a second browser (separate context) never sees the first one's volume; two tabs of
    one browser share the workspace (jobs) but each keeps its own current volume across a reload."""
    from dmic_core.defaults import shared_data_dir

    crop = shared_data_dir() / "cta-aorta-crop"
    if not (crop / "ct.nii.gz").is_file():
        pytest.skip("the real CT crop is not in ../shared/data")
    url, root = server
    image, label = phantom_files
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=scaled_ms(STEP_S))
        playwright_api.expect.set_options(timeout=scaled_ms(STEP_S))
        ctx_a, page, requests_a = _open_home(browser, url)
        _upload(page, crop / "ct.nii.gz", crop / "aorta.nii.gz")
        page.get_by_role("heading", name="ct.nii.gz").wait_for()

        _nav(page, "Compress")
        _set_multiselect(page, "Methods", ["hevc"])  # the defaults: 4 base QPs and the quick slab
        page.get_by_test_id("stSelectbox").filter(has_text="Codec").click()
        page.get_by_role("option", name=re.compile(r"^x265\b")).click()  # "x265 (fast: ...)"
        page.get_by_test_id("stBaseButton-primaryFormSubmit").filter(has_text="Start job").click()
        card = page.get_by_test_id("stExpander").filter(has_text="hevc · 4 points · x265 · slices 75-90 of 164")
        card.filter(has_text="— done").first.wait_for(timeout=scaled_ms(JOB_S * 2))
        _wait_idle(page)

        _nav(page, "Curves")
        page.get_by_text("do not describe the same structure").first.wait_for()
        page.get_by_text("BD numbers compare another method").wait_for()
        _shot(page, "08_curves_ct_aorta", "curves_warning")

        # a second tab of the same browser: same workspace, its own volume
        tab2 = ctx_a.new_page()
        tab2.set_default_timeout(scaled_ms(STEP_S))
        from urllib.parse import parse_qs, urlsplit

        ws_id = parse_qs(urlsplit(page.url).query)["ws"][0]
        tab2.goto(f"{url}/?ws={ws_id}")  # what a new tab of the same workspace opens with
        tab2.get_by_role("heading", name="DMIC Studio", exact=True).wait_for()
        _wait_idle(tab2)
        _upload(tab2, image, label)
        tab2.get_by_role("heading", name=image.name).wait_for()
        _nav(page, "Upload & inspect")
        page.reload()
        page.get_by_role("heading", name="ct.nii.gz").wait_for()  # tab 1 keeps its own volume

        # another browser: a separate context starts its own workspace and sees nothing of the first
        ctx_b, other, requests_b = _new_page(browser, url)
        other.get_by_role("heading", name="DMIC Studio", exact=True).wait_for()
        _wait_idle(other)
        _nav(other, "Upload & inspect")
        other.get_by_text("Upload a CT volume above").wait_for()
        assert other.get_by_text("ct.nii.gz").count() == 0
        _nav(other, "Compress")
        other.get_by_text("No volume yet").wait_for()
        _nav(other, "Curves")
        other.get_by_text("No finished rate points yet").wait_for()
        browser.close()
    outside = _outside(requests_a + requests_b)
    assert requests_a and requests_b and not outside, outside


def _hover_readout(page, chart, fx: float, fy: float) -> str:
    """The cursor readout of a plotly view with the mouse at (fx, fy) of its plot area."""
    area = chart.locator(".nsewdrag").first
    hover = chart.locator(".hoverlayer .hovertext text")

    def point() -> str | None:
        # the chart may still be laid out when first drawn (a hover then is cleared): move again until one shows
        area.scroll_into_view_if_needed()
        box = area.bounding_box()
        x, y = box["x"] + fx * box["width"], box["y"] + fy * box["height"]
        page.mouse.move(x + 2, y)
        page.mouse.move(x, y)
        page.wait_for_timeout(100)
        return hover.count() > 0 and hover.first.get_attribute("data-unformatted")

    return wait_for(point, timeout=STEP_S, what="the cursor readout", interval=0.2)


def test_upload_page_cursor_readout_gives_the_voxels_hu_and_mm(server, phantom_files):
    """The Upload page's interactive view (on by default, axial) reads, under the cursor, the HU of
    the very voxel at the position in mm it states, and the slice's own number and position."""
    from dmic_core.io import load_volume
    from dmic_core.render import display_spacing

    url, _ = server
    image, label = phantom_files
    volume = load_volume(image)
    row_mm, col_mm = display_spacing("axial", volume.spacing)
    n = volume.shape[0]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=scaled_ms(STEP_S))
        context, page, requests = _open_home(browser, url)
        _upload(page, image, label)
        chart = page.get_by_test_id("stPlotlyChart").first
        _plots_drawn(page, 1)
        seen = set()
        for fx, fy in ((0.5, 0.5), (0.4, 0.7), (0.6, 0.3)):  # inside the image (the plot area is wider)
            try:
                text = _hover_readout(page, chart, fx, fy)
            except Exception:
                _shot(page, "09_upload_readout_failed")  # the artifact shows what the page showed instead
                raise
            hu = re.search(r"^(-?\d+) HU<br>", text)
            pos = re.search(r"x (\d+\.\d) mm, y (\d+\.\d) mm", text)
            where = re.search(r"axial (\d+)/(\d+) at (\d+\.\d) mm", text)
            assert hu and pos and where, text
            index = int(where.group(1)) - 1
            assert int(where.group(2)) == n and index == n // 2  # the axial slider's default slice
            assert float(where.group(3)) == pytest.approx(index * volume.spacing[0], abs=0.05)
            row, col = round(float(pos.group(2)) / row_mm), round(float(pos.group(1)) / col_mm)
            assert int(hu.group(1)) == int(volume.hu[index, row, col]), (text, row, col)
            seen.add((row, col))
        assert len(seen) == 3  # three cursor positions, three voxels
        _shot(page, "09_upload_readout")
        browser.close()
    assert not _outside(requests), _outside(requests)


def test_single_dcm_file_uploads_and_its_volume_shows(server):
    """One DICOM file (a real enhanced CT, multi-frame) is accepted and loaded: its geometry in the
    facts table, its three views drawn."""
    from dmic_core.defaults import shared_data_dir

    dcm = shared_data_dir() / "dicom" / "eCT_Supplemental.dcm"
    if not dcm.is_file():
        pytest.skip("the DICOM sample is not in ../shared/data")
    url, _ = server
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=scaled_ms(STEP_S))
        context, page, requests = _open_home(browser, url)
        _upload(page, dcm, None)
        page.get_by_role("heading", name=dcm.name, exact=True).wait_for()
        facts = page.get_by_test_id("stTable").inner_text()
        for expected in ("2 x 512 x 512", "10, 0.389, 0.389", "-1024 / 172", "dicom"):
            assert expected in facts, facts
        page.get_by_text("axial 2/2 · 10.0 mm").wait_for()  # the middle axial slice's view
        assert page.get_by_test_id("stAlertContentError").count() == 0
        _shot(page, "10_upload_dcm")
        browser.close()
    assert not _outside(requests), _outside(requests)


def test_load_during_an_unfinished_upload_never_loads_the_file_it_replaces(server, phantom_files, tmp_path):
    """The race: a file is dropped and Load pressed before Streamlit has received it. Streamlit first
    asks the server for upload URLs and only then sends the file; its own guard (a form's submit button
    disabled during uploads) covers the second step only. The server's answer to the first step is
    held back here, which keeps the page in that window: Load must be disabled there (a form's Load
    was enabled and reloaded the replaced file), and load the new file once it has arrived."""
    from dmic_core.datasets.phantom import generate_phantom
    from dmic_core.io import save_nifti

    url, _ = server
    first, _label = phantom_files
    volume, _ = generate_phantom(12, n_slices=8, size=96)
    second = save_nifti(volume, volume.hu, tmp_path / "second.nii.gz")
    held: list = []
    hold = [False]
    routes: list = []

    def route(ws) -> None:
        to_server = ws.connect_to_server()
        to_server.on_message(lambda m: held.append(m) if hold[0] else ws.send(m))
        ws.on_message(to_server.send)
        routes.append(ws)

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=scaled_ms(STEP_S))
        context, page, requests = _new_page(browser)
        page.route_web_socket(re.compile(r"/_stcore/stream$"), route)
        page.goto(url)
        page.get_by_role("heading", name="DMIC Studio", exact=True).wait_for()
        _wait_idle(page)
        _nav(page, "Upload & inspect")
        expect = playwright_api.expect
        expect(_load_button(page)).to_be_disabled()  # nothing uploaded yet
        page.get_by_text("Load is enabled once the CT volume's upload has finished.").wait_for()
        _upload(page, first, None)

        hold[0] = True  # from here the page hears nothing from the server
        page.locator('input[type="file"]').nth(0).set_input_files(str(second))
        # Playwright runs the route's callbacks while the page is waited on: poll in short page waits
        wait_for(lambda: held or page.wait_for_timeout(20), timeout=STEP_S, what="the server's upload-URL answer")
        expect(_load_button(page)).to_be_disabled()
        page.get_by_text(f"Loaded: {_selection(first, None)}.", exact=False).wait_for()
        hold[0] = False
        for message in held:
            routes[-1].send(message)
        held.clear()

        _ready(page, _selection(second, None))
        _load_button(page).click()
        page.get_by_role("heading", name=second.name, exact=True).wait_for()
        page.get_by_text(f"Loaded: {_selection(second, None)}.", exact=False).wait_for()
        _images_loaded(page, 3)
        browser.close()
    assert not _outside(requests), _outside(requests)
