"""The BoxPrompter widget in a real browser: JupyterLab + Debian's Chromium, driven by Playwright.

The test opens ``tests/browser/widget_brain.ipynb`` (the BoxPrompter part of an earlier notebook 06, on the synthetic brain slice) in JupyterLab, runs it, deletes
the default boxes of the 2D prompter with their × buttons, draws two boxes with the mouse (the
lateral ventricles, then the whole brain), clicks once inside the brain box, and checks from the
kernel side that:

* the kernel runs this interpreter (``sys.executable``) and received the boxes where the mouse drew
  them (within a pixel);
* the brain box's mask matches the brain (Dice ≥ ``BRAIN_DICE_MIN``, precision ≥ ``BRAIN_PRECISION_MIN``);
* neither box re-ran the image encoder, and the second box decoded only itself;
* the image the browser shows is exactly the overlay of those masks (pixels read back from the
  ``<img>``);
* the click (no drag) reached the kernel as a foreground point on the brain object where the mouse
  clicked, added no box, changed the mask near the click without re-encoding, and is drawn.

It saves ``artifacts/browser_box_prompt.png`` (the widget with both boxes and masks).
Needs ``/usr/bin/chromium`` (``apt-get install chromium``; scripts/setup.sh installs it as root).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "tests" / "browser" / "widget_brain.ipynb"  # BoxPrompter on the synthetic brain slice (notebook 06 itself runs on the CT)
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "artifacts" / "browser_box_prompt.png"

# Measured on the sample slice with the pretrained LiteMedSAM through its published preprocessing
# (cv2.INTER_AREA resize, box int(coord × 256 / max(H, W))): a box 4 px outside the brain's extreme
# pixels on every side gives Dice 0.779 against label > 0 (0.772–0.780 when any corner is off by
# ±1 px, the mouse's rounding), precision 0.981. (Before the published resize — bilinear with
# antialiasing — it was 0.870: the 191×164 slice is enlarged to 256, where INTER_AREA acts like
# nearest neighbour; bench/RESULTS.md has the trade-off on real CT, where INTER_AREA is better.)
# The thresholds sit below that with a margin, and above what a wrong box gives: the tight box
# shrunk by 2 px drops to 0.656. A filled rectangle of the drawn box (no model at all) has Dice
# 0.81 but precision 0.68: the precision threshold is what tells the model's mask from the box itself.
BRAIN_MARGIN = 4
BRAIN_DICE_MIN = 0.74
BRAIN_PRECISION_MIN = 0.90
VENTRICLE_MARGIN = 3
# A foreground click at the interior of the largest region the brain box's mask missed, measured
# headless with the same box and click: with the shipped click decoder 3,950 pixels change, the
# nearest 5 px from the click (brain Dice 0.779 → 0.809); with the pretrained decoder alone 5,410,
# the nearest 1 px (0.779 → 0.929).
CLICK_NEAR_PX = 12

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium: run `apt-get install -y chromium` "
                       "(scripts/setup.sh does as root)"),
]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

KERNEL_READY_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""

NOTEBOOK_DONE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  for (const c of cells) for (let i = 0; i < c.model.outputs.length; i++) {
    const o = c.model.outputs.get(i);
    if (o.type === 'error') errors.push(JSON.stringify(o.toJSON()).slice(0, 2000));
  }
  if (errors.length) return {errors};
  const k = w.sessionContext.session.kernel;
  return (k.status === 'idle' && cells.every(c => c.model.executionCount !== null)) ? {errors: []} : null;
}"""

# Run code in the notebook's kernel (not in a cell) and return what it printed.
KERNEL_EXEC_JS = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, silent: false, store_history: false});
  let out = '', err = '';
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === 'stream') out += msg.content.text;
    if (msg.header.msg_type === 'error') err += msg.content.ename + ': ' + msg.content.evalue;
  };
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('kernel timeout')), 120000));
  await Promise.race([future.done, timeout]);
  return {out, err};
}"""

# The <img>'s pixels as base64 RGBA (blob: URLs are same-origin, so the canvas is readable).
IMAGE_PIXELS_JS = """(img) => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, c.width, c.height).data;
  let s = '';
  for (let i = 0; i < data.length; i += 8192) s += String.fromCharCode.apply(null, data.subarray(i, i + 8192));
  return btoa(s);
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server we started and any kernel it left, by PID."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 serving a temp dir with a copy of notebook 06; yields (url, root)."""
    import nbformat

    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The Colab-only install cell (tag skip-execution, as nbmake skips it) would git clone here.
    nb.cells = [c for c in nb.cells if "skip-execution" not in c.metadata.get("tags", [])]
    nbformat.write(nb, root / NOTEBOOK.name)
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    threads = os.environ.get("MEDSAM_LITE_THREADS", "2")
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(root / "settings"), JUPYTER_CONFIG_DIR=str(root / "config"),
               JUPYTER_DATA_DIR=str(root / "data"), JUPYTER_RUNTIME_DIR=str(root / "runtime"),
               IPYTHONDIR=str(root / "ipython"), MEDSAM_LITE_QUICK="1", MEDSAM_LITE_THREADS=threads,
               OMP_NUM_THREADS=threads)
    env.pop("JUPYTER_PATH", None)
    # The notebook's "python3" kernel is this interpreter (the user data dir wins over others).
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", "python3"],
                   env=env, check=True, capture_output=True)
    port, token = _free_port(), base64.b32encode(os.urandom(15)).decode().lower()
    log = open(root / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.token={token}",
         "--ServerApp.ip=127.0.0.1", f"--port={port}", "--allow-root", "--LabApp.expose_app_in_browser=True",
         f"--ServerApp.root_dir={root}"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (root / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}?token={token}", root
    finally:
        _stop(proc)
        log.close()


def _kernel_json(page, code: str) -> dict:
    result = page.evaluate(KERNEL_EXEC_JS, code)
    assert not result["err"], result["err"]
    return json.loads(result["out"].strip().splitlines()[-1])


def _state(page, root: Path) -> dict:
    """The 2D prompter's state, read in the kernel; masks go through an .npz file.

    One function call, so that it is one snapshot: ipykernel 7 may handle a widget message (a box
    arriving) between two top-level statements of the code we send.
    """
    masks = root / "prompt_masks.npz"
    return _kernel_json(page, f"""
def _medsam_lite_state():
    import json, sys
    import numpy as np
    for _ in range(100):  # a widget message may be handled meanwhile: take a snapshot no update crossed
        summary, prompts = prompter.summary(), prompter.prompts
        if prompter.summary() == summary:
            break
    np.savez({str(masks)!r}, *[p.mask for p in prompts])
    return json.dumps({{**summary, "executable": sys.executable, "masks_saved": len(prompts),
                        "label_map_max": int(prompter.label_map.max())}})
print(_medsam_lite_state())
""")


def _wait_state(page, root: Path, predicate, what: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(page, root)
        if predicate(state) and state["masks_saved"] == len(state["prompts"]):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last kernel state: {state}")
        time.sleep(0.3)


def _draw(page, img, box_xyxy) -> None:
    """Drag the mouse over ``box_xyxy`` (image pixels) on the widget's <img>."""
    img.scroll_into_view_if_needed()
    rect = img.bounding_box()
    natural_w, natural_h = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    sx, sy = rect["width"] / natural_w, rect["height"] / natural_h
    x0, y0, x1, y1 = box_xyxy
    page.mouse.move(rect["x"] + x0 * sx, rect["y"] + y0 * sy)
    page.mouse.down()
    page.mouse.move(rect["x"] + x1 * sx, rect["y"] + y1 * sy, steps=10)
    page.mouse.up()


def _click(page, img, x: float, y: float) -> None:
    """Click (no drag) at pixel ``(x, y)`` of the widget's <img> (the centre of that pixel)."""
    img.scroll_into_view_if_needed()
    rect = img.bounding_box()
    natural_w, natural_h = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    page.mouse.click(rect["x"] + (x + 0.5) * rect["width"] / natural_w, rect["y"] + (y + 0.5) * rect["height"] / natural_h)


def _robot_click(mask: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The interior point (farthest from its border) of the largest region of ``truth`` the mask missed."""
    from scipy import ndimage

    regions, _ = ndimage.label(truth & ~mask)
    largest = regions == 1 + int(np.argmax(np.bincount(regions.ravel())[1:]))
    y, x = np.unravel_index(np.argmax(ndimage.distance_transform_edt(np.pad(largest, 1))[1:-1, 1:-1]), mask.shape)
    return float(x), float(y)


def _wait_new_image(page, img, old_src: str) -> None:
    page.wait_for_function("([i, old]) => i.src !== old && i.complete && i.naturalWidth > 0",
                           arg=[img.element_handle(), old_src], timeout=30000, polling=100)


def test_draw_boxes_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    import medsam_lite as ml
    from medsam_lite import io, plotting, samples

    url, root = lab
    image = io.read_volume(samples.sample_path("brain_slice.png")).array
    label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
    brain, ventricles = label > 0, label == 3
    h, w = image.shape
    m, v = BRAIN_MARGIN, VENTRICLE_MARGIN
    brain_box = np.clip(ml.box_from_mask(brain) + [-m, -m, m, m], 0, [w - 1, h - 1, w - 1, h - 1])
    ventricle_box = ml.box_from_mask(ventricles) + [-v, -v, v, v]

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(root / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(url)
            page.wait_for_function(KERNEL_READY_JS, timeout=180000, polling=250)
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            done = page.wait_for_function(NOTEBOOK_DONE_JS, timeout=600000, polling=500).json_value()
            assert not done["errors"], "notebook 06 raised in JupyterLab:\n" + "\n".join(done["errors"])

            canvas = page.locator(".medsam-lite-canvas").first   # the 2D prompter's widget
            img = canvas.locator('img[alt="annotate me"]')
            page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
            assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [w, h]

            state = _state(page, root)
            assert Path(state["executable"]).resolve() == Path(sys.executable).resolve()
            assert [p["label"] for p in state["prompts"]] == ["brain", "ventricles"]  # the notebook's boxes
            encoder_calls = state["encoder_calls"]

            # Delete every box with its × button: its mask goes too.
            canvas.scroll_into_view_if_needed()
            close_buttons = canvas.locator("div.image > svg g > rect.clickable")
            while close_buttons.count():
                n = close_buttons.count()
                close_buttons.first.click()
                page.wait_for_function("([c, n]) => c.querySelectorAll('div.image > svg g > rect.clickable').length < n",
                                       arg=[canvas.element_handle(), n], timeout=10000)
            state = _wait_state(page, root, lambda s: not s["prompts"], "the deleted boxes to leave the kernel")
            assert state["label_map_max"] == 0

            # Box 1: class "ventricles" (click its chip), drawn with the mouse.
            canvas.locator(".class-label", has_text="ventricles").click()
            old_src = img.get_attribute("src")
            _draw(page, img, ventricle_box)
            state = _wait_state(page, root, lambda s: len(s["prompts"]) == 1, "the first drawn box")
            _wait_new_image(page, img, old_src)
            decoder_calls = state["decoder_calls"]
            first = state["prompts"][0]
            assert first["label"] == "ventricles"
            np.testing.assert_allclose(first["box"], ventricle_box, atol=1.0)

            # Box 2: class "brain", around the whole brain, drawn from outside the first box.
            canvas.locator(".class-label", has_text="brain").click()
            old_src = img.get_attribute("src")
            _draw(page, img, brain_box)
            state = _wait_state(page, root, lambda s: len(s["prompts"]) == 2, "the second drawn box")
            _wait_new_image(page, img, old_src)
            second = state["prompts"][1]
            assert second["label"] == "brain"
            np.testing.assert_allclose(second["box"], brain_box, atol=1.0)

            # No box re-encoded the image; the second box decoded only itself.
            assert state["encoder_calls"] == encoder_calls
            assert state["decoder_calls"] == decoder_calls + 1

            with np.load(root / "prompt_masks.npz") as f:
                vent_mask, brain_mask = f["arr_0"], f["arr_1"]
            dice = ml.dice(brain_mask, brain)
            precision = (brain_mask & brain).sum() / max(brain_mask.sum(), 1)
            print(f"brain box {second['box']}: Dice {dice:.3f}, precision {precision:.3f}; "
                  f"ventricles box {first['box']}: Dice {ml.dice(vent_mask, ventricles):.3f}")
            assert dice >= BRAIN_DICE_MIN, f"brain Dice {dice:.3f} < {BRAIN_DICE_MIN}"
            assert precision >= BRAIN_PRECISION_MIN, f"brain precision {precision:.3f} < {BRAIN_PRECISION_MIN}"
            x0, y0, x1, y1 = (int(c) for c in first["box"])
            assert vent_mask.any() and not vent_mask[:, :x0].any() and not vent_mask[:y0].any()

            # The browser shows exactly the overlay of these masks in class colours (the smaller
            # mask painted last, on top).
            shown = np.frombuffer(base64.b64decode(img.evaluate(IMAGE_PIXELS_JS)), np.uint8).reshape(h, w, 4)
            assert brain_mask.sum() > vent_mask.sum()
            expected = plotting.overlay(image, [brain_mask, vent_mask], colors=["brain", "ventricles"])
            assert np.abs(shown[..., :3].astype(int) - expected).max() <= 2
            status = canvas.locator("xpath=..").locator(".widget-html").first.inner_text()
            assert "2 boxes" in status and f"image encoder runs: {encoder_calls}" in status

            # A click without drag inside the brain box, at the robot user's next click (the interior of
            # the largest region the mask missed): a foreground point on the selected (brain) object,
            # decoded from the box, the click and the previous logits, with no new encoding.
            x, y = _robot_click(brain_mask, brain)
            old_src = img.get_attribute("src")
            _click(page, img, x, y)
            state = _wait_state(page, root, lambda s: len(s["prompts"]) == 2 and s["prompts"][1]["clicks"],
                                "the click to reach the kernel")
            _wait_new_image(page, img, old_src)
            [[cx, cy, positive]] = state["prompts"][1]["clicks"]
            assert positive == 1 and abs(cx - x) <= 1.0 and abs(cy - y) <= 1.0, (cx, cy, x, y)
            assert not state["prompts"][0]["clicks"] and state["encoder_calls"] == encoder_calls
            assert state["decoder_calls"] == decoder_calls + 2 and len(canvas.locator("div.image > svg rect.clickable")
                                                                        .all()) == 2  # no box was added
            with np.load(root / "prompt_masks.npz") as f:
                clicked = f["arr_1"]
            changed = np.argwhere(clicked != brain_mask)
            nearest = np.hypot(changed[:, 1] - cx, changed[:, 0] - cy).min() if len(changed) else np.inf
            print(f"click ({cx:.1f}, {cy:.1f}): {len(changed)} pixels changed, nearest {nearest:.1f} px; "
                  f"brain Dice {ml.dice(clicked, brain):.3f} (box alone {dice:.3f})")
            assert nearest <= CLICK_NEAR_PX
            shown = np.frombuffer(base64.b64decode(img.evaluate(IMAGE_PIXELS_JS)), np.uint8).reshape(h, w, 4)
            assert np.abs(shown[int(round(cy)), int(round(cx)), :3].astype(int) - [0, 220, 0]).max() <= 2  # marker
            assert "1 click" in canvas.locator("xpath=..").locator(".widget-html").first.inner_text()

            SCREENSHOT.parent.mkdir(exist_ok=True)
            canvas.locator("xpath=..").screenshot(path=str(SCREENSHOT))
        finally:
            context.close()
