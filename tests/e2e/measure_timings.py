"""Measure the app's interactive timings in a real browser (not a test; run by hand, see docs/app.md).

    .venv/bin/python tests/e2e/measure_timings.py [--slices 275] [--size 512]

1. First slice after upload: a phantom of ``slices`` x ``size`` x ``size`` saved as .nii.gz is set on
   the file uploader; the clock starts when the upload completes and *Load* is clicked and stops
   when the first rendered slice image is visible in the page.
2. Slider redraw: the axial slider is focused and moved one step with the arrow key, with the
   vessel-mask and CTU-map overlays on; the clock stops when the axial image's ``src`` changes.
   Repeated over fresh (uncached) slices; the median and maximum are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, _free_port  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=275)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--moves", type=int, default=10)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from dmic_core.datasets.phantom import generate_phantom
    from dmic_core.io import save_nifti

    tmp = Path(tempfile.mkdtemp(prefix="dmic_timing_"))
    volume, label = generate_phantom(5, n_slices=args.slices, size=args.size)
    image = save_nifti(volume, volume.hu, tmp / "ct.nii.gz")
    mask = save_nifti(volume, label.astype("uint8"), tmp / "ct_label.nii.gz")
    print(f"volume {volume.shape}, file {image.stat().st_size / 2**20:.1f} MB")
    port = _free_port()
    env = {**os.environ, "DMIC_WORKSPACE_ROOT": str(tmp / "ws")}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.headless", "true"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/upload")
            page.get_by_text("Upload & inspect").first.wait_for()
            files = page.locator('input[type="file"]')
            files.nth(0).set_input_files(str(image))
            files.nth(1).set_input_files(str(mask))
            button = page.get_by_test_id("stBaseButton-primary").filter(has_text="Load")
            # Load is enabled once both files are on the server (the caption names them)
            page.get_by_text(f"Ready to load: {image.name} with the label {mask.name}.").wait_for(timeout=120_000)
            start = time.perf_counter()
            button.click()
            page.locator('[data-testid="stImage"] img').first.wait_for(timeout=60_000)
            first = time.perf_counter() - start
            print(f"first slice after upload: {first:.2f} s")
            print(page.get_by_text("Loaded in").first.inner_text())
            page.wait_for_timeout(1500)
            page.get_by_test_id("stSelectbox").filter(has_text="CTU QP-offset map").get_by_role("combobox").click()
            page.get_by_role("option", name="two-level", exact=True).click()
            page.wait_for_timeout(3000)
            img = page.locator('[data-testid="stImage"] img').first
            sliders = page.get_by_role("slider")
            print([(sliders.nth(i).get_attribute("aria-valuemax"), sliders.nth(i).get_attribute("aria-label"))
                   for i in range(sliders.count())])
            axial = page.get_by_test_id("stSlider").filter(has_text="Axial").get_by_role("slider")
            times = []
            for _ in range(args.moves):
                before = img.get_attribute("src")
                axial.focus()
                t0 = time.perf_counter()
                page.keyboard.press("ArrowRight")
                page.wait_for_function("(b) => { const i = document.querySelector('[data-testid=stImage] img');"
                                       " return i && i.src !== b && i.complete; }", arg=before, timeout=10_000)
                times.append(time.perf_counter() - t0)
                page.wait_for_timeout(300)
            print(f"slider redraw with overlays: median {statistics.median(times) * 1000:.0f} ms, "
                  f"max {max(times) * 1000:.0f} ms over {len(times)} moves: {[round(t * 1000) for t in times]}")
            page.screenshot(path=str(ROOT / "test-artifacts" / "timing_upload_512.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
