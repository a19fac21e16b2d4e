"""LayerBrowser without a browser: traits in, exact pictures out.

Every expected picture is computed here from core calls and ``zfwidgets.core.render`` on a
separate Inspector, never through the widget's own drawing code.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from zfwidgets import Inspector, LayerBrowser, demo
from zfwidgets.core import render
from zfwidgets.core.gradcam import gradcam, upsample
from zfwidgets.core.mining import mine
from zfwidgets.core.top_views import top_projections

ZOOM = 6  # 28x28 digits are drawn 168 px wide


@pytest.fixture(scope="module")
def ref(d):
    """An independent inspector for expected values."""
    return Inspector(d.model, device="cpu")


@pytest.fixture
def browser(d):
    return LayerBrowser(d.model, dataset=d.dataset, mean=d.mean, classes=d.classes)


def png(picture: np.ndarray, zoom: int) -> bytes:
    return render.to_png(render.upscale(picture, zoom))


def decode(png_bytes: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png_bytes)) as im:
        return np.asarray(im)


def expected_projection(ref, d, x, layer, channel, method="deconvnet", position="max") -> bytes:
    if method == "gradcam":
        names = ref.layers
        index = ref.layer_index(layer)
        shapes = ref.shapes(tuple(x.shape))
        cam_layer = [names[i] for i in range(index + 1) if len(shapes[i]) == 4][-1]
        heat = render.heatmap(upsample(gradcam(ref, x, cam_layer), (28, 28)))
        return png(render.overlay(render.input_image(x, d.mean), heat), ZOOM)
    p = ref.project(x, layer, channel, position="max" if position == "max" else None, method=method)
    picture = render.saliency_image(p) if method == "saliency" else render.projection_image(p)
    return png(picture, ZOOM)


def expected_heat(ref, x, layer, channel) -> bytes:
    fmap = ref.activations(x, layer)[channel]
    return png(render.heatmap(fmap), round(168 / fmap.shape[0]))


# ----- traits drive the pictures ---------------------------------------------------------------


def test_initial_state_and_pictures(browser, ref, d):
    x = d.dataset[0][0]
    assert (browser.layer, browser.channel, browser.method, browser.position) == (
        "conv1",
        0,
        "deconvnet",
        "max",
    )
    assert browser._input_image.value == png(render.input_image(x, d.mean), ZOOM)
    assert browser._heat_image.value == expected_heat(ref, x, "conv1", 0)
    assert browser._projection_image.value == expected_projection(ref, d, x, "conv1", 0)
    assert browser.status == ""


@pytest.mark.parametrize(
    "changes",
    [
        {"channel": 7},
        {"layer": "conv2", "channel": 5},
        {"layer": "conv3", "channel": 60},
        {"layer": "conv3", "channel": 3, "method": "guided"},
        {"layer": "conv2", "channel": 9, "method": "saliency"},
        {"layer": "conv2", "channel": 9, "position": "map"},
        {"layer": "conv3", "channel": 1, "method": "guided", "position": "map"},
        {"layer": "features.4", "channel": 2},  # a module name, not an alias: pre-ReLU conv2
        {"layer": "fc4", "channel": 100},
        {"layer": "fc5", "channel": 3, "method": "guided"},
        {"layer": "conv2", "method": "gradcam"},
        {"layer": "fc4", "method": "gradcam"},  # class map from the last layer with maps
        {"image_index": 42, "layer": "conv2", "channel": 11},
    ],
)
def test_setting_traits_draws_the_expected_projection(browser, ref, d, changes):
    for name, value in changes.items():
        setattr(browser, name, value)
    x = d.dataset[browser.image_index][0]
    expected = expected_projection(
        ref, d, x, browser.layer, browser.channel, browser.method, browser.position
    )
    assert browser._projection_image.value == expected
    assert browser.status == ""


def test_channel_and_layer_changes_update_the_heat_map(browser, ref, d):
    x = d.dataset[0][0]
    browser.layer = "conv3"
    browser.channel = 12
    assert browser._heat_image.value == expected_heat(ref, x, "conv3", 12)
    browser.image_index = 9
    assert browser._heat_image.value == expected_heat(ref, d.dataset[9][0], "conv3", 12)
    assert browser._input_image.value == png(render.input_image(d.dataset[9][0], d.mean), ZOOM)


def test_every_change_updates_the_picture(browser):
    seen = {browser._projection_image.value}
    for name, value in [
        ("channel", 3),
        ("layer", "conv2"),
        ("method", "guided"),
        ("position", "map"),
        ("image_index", 5),
        ("method", "gradcam"),
    ]:
        setattr(browser, name, value)
        assert browser._projection_image.value not in seen, f"{name}={value!r} changed nothing"
        seen.add(browser._projection_image.value)


def test_layer_change_clamps_the_channel_and_the_slider_follows(browser):
    browser.layer = "conv2"
    browser.channel = 63
    assert browser._channel_slider.max == 63
    browser.layer = "fc5"  # 10 units
    assert browser.channel == 9
    assert browser._channel_slider.max == 9 and browser._channel_slider.value == 9
    browser.layer = "conv3"
    assert browser._channel_slider.max == 63 and browser.channel == 9
    assert browser._layer_menu.value == "conv3"


def test_controls_drive_the_traits(browser):
    browser._layer_menu.value = "conv2"
    browser._channel_slider.value = 17
    browser._method_toggle.value = "saliency"
    browser._position_toggle.value = "map"
    browser._index_box.value = 12
    assert (browser.layer, browser.channel, browser.method, browser.position) == (
        "conv2",
        17,
        "saliency",
        "map",
    )
    assert browser.image_index == 12 and browser._index_slider.value == 12


def test_gradcam_disables_the_unit_toggle(browser):
    browser.method = "gradcam"
    assert browser._position_toggle.disabled
    browser.method = "guided"
    assert not browser._position_toggle.disabled


def test_layer_menu_lists_the_blocks_then_each_browsable_step_once(browser, d):
    values = [value for _, value in browser._layer_menu.options]
    insp = browser.inspector
    assert values[:5] == ["conv1", "conv2", "conv3", "fc4", "fc5"]
    steps = [insp.layer_name(v) for v in values]
    assert len(set(steps)) == len(steps)  # no step twice ("features.1" is conv1)
    modules = dict(d.model.named_modules())
    hidden = (torch.nn.Dropout, torch.nn.LocalResponseNorm, torch.nn.Flatten, torch.nn.Identity)
    kept = (torch.nn.Conv2d, torch.nn.ReLU, torch.nn.MaxPool2d, torch.nn.Linear)
    assert not [s for s in steps if isinstance(modules.get(s), hidden)]
    assert "flatten" not in steps  # torch.flatten in forward, no module
    assert {n for n, m in modules.items() if isinstance(m, kept)} == set(steps)
    assert len(values) < len(insp.layers)


def test_a_step_the_menu_hides_can_still_be_set_from_code(browser, d):
    lrn = next(n for n, m in d.model.named_modules() if isinstance(m, torch.nn.LocalResponseNorm))
    browser.layer = lrn
    assert browser.status == "" and browser._layer_menu.value == lrn
    browser.layer = "conv2"
    assert lrn not in [value for _, value in browser._layer_menu.options]


def test_kwargs_set_the_initial_state(d, ref):
    browser = LayerBrowser(
        d.model, images=d.dataset, mean=d.mean, layer="conv2", channel=5, method="guided"
    )
    x = d.dataset[0][0]
    assert browser._projection_image.value == expected_projection(ref, d, x, "conv2", 5, "guided")
    with pytest.raises(TypeError, match="unexpected"):
        LayerBrowser(d.model, images=d.dataset, colour="red")


# ----- the feature-map canvas ---------------------------------------------------------------------


def test_canvas_shows_the_layer_grid_and_clicks_select_maps(browser, ref, d):
    drawn = []
    browser._canvas.put_image_data = lambda data, x=0, y=0: drawn.append(data)
    # 64 maps of 13x13: 8 columns of 26 px tiles with 3 px gaps, 235 px wide (the grid's room is
    # 240 px: issue 32's 1280x720 screen with the file browser open)
    browser.layer = "conv2"
    acts = ref.activations(d.dataset[0][0], "conv2")
    tiles = [render.upscale(h, 2) for h in render.heatmap(acts)]
    expected = render.grid(tiles, cols=8, pad=3, background=40)
    assert np.array_equal(drawn[-1][..., :3], expected) and (drawn[-1][..., 3] == 255).all()

    row, col = 2, 5
    browser._on_canvas_click(3 + col * 29 + 13, 3 + row * 29 + 13)
    assert browser.channel == row * 8 + col
    assert browser._channel_slider.value == row * 8 + col
    x = d.dataset[0][0]
    assert browser._projection_image.value == expected_projection(ref, d, x, "conv2", row * 8 + col)


def test_clicks_outside_the_maps_change_nothing(browser):
    browser.channel = 4
    width, height = browser.grid.size
    for x, y in [(-5, 10), (width + 10, 10), (10, height + 10)]:
        browser._on_canvas_click(x, y)
        assert browser.channel == 4


def test_grid_geometry_matches_render_grid():
    from zfwidgets.widgets.parts import GridGeometry

    geometry, zoom = GridGeometry.for_tiles(10, (4, 6))
    tiles = [np.full((4 * zoom, 6 * zoom), 200 + i, np.uint8) for i in range(10)]
    picture = render.grid(tiles, cols=geometry.cols, pad=geometry.pad, background=0)
    assert picture.shape[1::-1] == geometry.size
    for i in range(10):
        x, y = geometry.center(i)
        assert picture[int(y), int(x), 0] == 200 + i
        assert geometry.cell_at(x, y) == i


@pytest.mark.parametrize(
    "count, size, cols, zoom",
    [
        # worked by hand for the default 360 x 400 area, 3 px padding, tiles of <= 64 px:
        (64, (12, 12), 8, 3),  # 9 across also gives zoom 3 but leaves one map alone
        (32, (28, 28), 6, 2),  # 6 x 6 is the only layout at zoom 2
        (256, (13, 13), 16, 1),  # 22 across also fits at 1:1 but leaves 8 cells empty
        (10, (3, 3), 5, 21),  # at 21x (64 // 3), 5 and 2 across leave no cell empty: wider wins
    ],
)
def test_grid_layout_prefers_big_tiles_then_full_rows(count, size, cols, zoom):
    from zfwidgets.widgets.parts import GridGeometry

    geometry, got_zoom = GridGeometry.for_tiles(count, size)
    assert (geometry.cols, got_zoom) == (cols, zoom)
    assert geometry.size[0] <= 360 + 3 and geometry.size[1] <= 400 + 3  # plus the outer pad


# ----- bad input: a message in the status line, the widget keeps working -------------------------


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("channel", 999, "out of range for conv1: 0..31"),
        ("channel", -1, "out of range"),
        ("layer", "conv9", "unknown layer 'conv9'"),
        ("method", "magic", "unknown method 'magic'"),
        ("position", "corner", "position must be 'max' or 'map'"),
        ("image_index", 1000, "image 1000 is out of range: 0..999"),
        ("image_index", -3, "out of range"),
    ],
)
def test_bad_values_keep_the_old_value_and_say_why(browser, ref, d, name, value, message):
    before = getattr(browser, name)
    picture = browser._projection_image.value
    setattr(browser, name, value)
    assert getattr(browser, name) == before
    assert message in browser.status
    assert browser.status_line.level == "error"
    assert browser._projection_image.value == picture
    browser.channel = 2  # still working
    assert browser.status == ""
    expected = expected_projection(ref, d, d.dataset[browser.image_index][0], browser.layer, 2)
    assert browser._projection_image.value == expected


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(browser, name: str, data: bytes) -> None:
    """What the front end sends when a file is chosen with the FileUpload button."""
    entry = {
        "name": name,
        "type": "image/png",
        "size": len(data),
        "content": memoryview(data),
        "last_modified": 0,
    }
    browser._upload_button.set_state({"value": [entry]})


@pytest.mark.parametrize(
    "data, message",
    [
        (b"this is a text file, not a picture", "'notes.png' is not an image file"),
        (
            _png_bytes(np.random.default_rng(0).integers(0, 256, (28, 28), np.uint8))[:400],
            "could not be",
        ),
        (b"", "is not an image file"),
    ],
    ids=["text", "truncated-png", "empty"],
)
def test_bad_uploads_show_a_message_and_the_widget_keeps_working(browser, ref, d, data, message):
    picture = browser._projection_image.value
    _upload(browser, "notes.png", data)
    assert message in browser.status and browser.status_line.level == "error"
    assert not browser.show_upload and browser._upload_toggle.disabled
    assert browser._projection_image.value == picture
    browser.channel = 6
    assert browser._projection_image.value == expected_projection(
        ref, d, d.dataset[0][0], "conv1", 6
    )


def test_uploaded_picture_is_converted_to_the_model_input(browser, ref, d):
    pixels = np.zeros((56, 40, 3), np.uint8)  # colour, wrong size: becomes grey 28x28
    pixels[10:46, 16:24] = (255, 255, 255)  # a bar, like a "1"
    _upload(browser, "one.png", _png_bytes(pixels))
    assert browser.show_upload and browser.status == ""
    grey = Image.fromarray(pixels).convert("L").resize((28, 28), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(grey, np.float32) / 255)[None] - d.mean
    assert torch.allclose(browser.image, x)
    browser.layer, browser.channel = "conv2", 4
    assert browser._projection_image.value == expected_projection(ref, d, x, "conv2", 4)
    assert "uploaded 'one.png'" in browser._input_caption.text
    browser.image_index = 3  # picking from the set leaves the upload
    assert not browser.show_upload
    assert browser._projection_image.value == expected_projection(
        ref, d, d.dataset[3][0], "conv2", 4
    )
    browser.show_upload = True  # and the toggle brings it back
    assert torch.equal(browser.image, x)


def test_without_images_the_widget_asks_for_an_upload(d, ref):
    browser = LayerBrowser(d.model, mean=d.mean)
    assert browser.image is None and "upload" in browser.status
    assert browser._index_slider.disabled and browser._top_toggle.disabled
    browser.show_top = True
    assert "no data set" in browser.status
    digit = np.round((d.dataset[5][0] + d.mean)[0].numpy() * 255).astype(np.uint8)
    browser.upload(_png_bytes(digit), "digit.png")
    assert browser.show_upload and browser.status == ""
    assert torch.allclose(browser.image, d.dataset[5][0], atol=1e-6)


# ----- top 9 --------------------------------------------------------------------------------------


def _tile(picture: np.ndarray, box, side: int) -> np.ndarray:
    """The box's pixels on a side x side background tile, away from the border it was cut by."""
    patch = picture[box.top : box.bottom, box.left : box.right]
    tile = np.full((side, side) + patch.shape[2:], 40, np.uint8)
    top = side - patch.shape[0] if box.top == 0 else 0
    left = side - patch.shape[1] if box.left == 0 else 0
    tile[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return tile


def _expected_top(ref, d, layer, channel, method, side):
    top = mine(ref, d.dataset, layers=[layer], k=9, progress=False)
    entries = top_projections(ref, top, d.dataset, layer, channel, method)
    zoom = round(84 / side)
    picture = render.saliency_image if method == "saliency" else render.projection_image
    projections = [_tile(picture(e.projection), e.box, side) for e in entries]
    patches = [_tile(render.input_image(e.image, d.mean), e.box, side) for e in entries]
    grids = [
        render.to_png(render.grid([render.upscale(t, zoom) for t in tiles], cols=3))
        for tiles in (projections, patches)
    ]
    return entries, grids


@pytest.mark.parametrize(
    "layer, channel, method, side",
    [("conv2", 5, "deconvnet", 11), ("conv3", 46, "guided", 23), ("conv1", 3, "saliency", 5)],
)
def test_top9_equals_mine_and_top_projections(browser, ref, d, layer, channel, method, side):
    browser.layer, browser.channel, browser.method = layer, channel, method
    browser.show_top = True
    assert browser.wait(timeout=60)
    entries, (projections, patches) = _expected_top(ref, d, layer, channel, method, side)
    got = browser.top_entries
    assert [e.image_index for e in got] == [e.image_index for e in entries]
    assert [e.value for e in got] == [e.value for e in entries]
    assert [e.position for e in got] == [e.position for e in entries]
    assert browser._top_projections.value == projections
    assert browser._top_patches.value == patches
    assert f"mined {layer}" in browser.status


def test_top9_is_cached_per_layer_and_follows_the_channel(browser, ref, d):
    browser.layer = "conv2"
    browser.show_top = True
    browser.wait()
    first = browser.mining_seconds["features.5"]
    browser.channel = 8
    _, (projections, _) = _expected_top(ref, d, "conv2", 8, "deconvnet", 11)
    assert browser._top_projections.value == projections
    browser.layer = "conv3"
    browser.wait()
    browser.layer = "conv2"
    assert browser.wait(timeout=1) and browser.mining_seconds["features.5"] == first
    assert browser._top_projections.value == projections


def test_top9_with_gradcam_shows_deconvnet_units(browser, ref, d):
    browser.layer, browser.channel, browser.method = "conv2", 5, "gradcam"
    browser.show_top = True
    browser.wait()
    _, (projections, _) = _expected_top(ref, d, "conv2", 5, "deconvnet", 11)
    assert browser._top_projections.value == projections
    assert "deconvnet" in browser._top_caption.text


class SlowDigits(Dataset):
    """The demo digits, slowly: long enough to change layer while mining."""

    def __init__(self, base, delay=0.002):
        self.base, self.delay = base, delay

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        time.sleep(self.delay)
        return self.base[i]


def test_changing_layer_while_mining_supersedes_it(d, ref):
    browser = LayerBrowser(d.model, dataset=SlowDigits(d.dataset), mean=d.mean, layer="conv1")
    browser.show_top = True
    time.sleep(0.3)
    assert browser._tasks.running == "features.1"
    assert browser._progress.layout.visibility == "visible"
    browser.layer = "conv3"
    assert browser.wait(timeout=60)
    assert set(browser.mining_seconds) == {"features.9"}, "the conv1 pass was not cancelled"
    assert browser._progress.layout.visibility == "hidden"
    entries = top_projections(
        ref, mine(ref, d.dataset, layers=["conv3"], progress=False), d.dataset, "conv3", 0
    )
    assert [e.image_index for e in browser.top_entries] == [e.image_index for e in entries]


def test_hiding_the_top9_cancels_mining(d):
    browser = LayerBrowser(d.model, dataset=SlowDigits(d.dataset), mean=d.mean)
    browser.show_top = True
    time.sleep(0.2)
    browser.show_top = False
    assert browser.wait(timeout=60)
    assert browser.mining_seconds == {} and browser.top_entries is None
    assert browser._top_panel.layout.display == "none"


def test_the_kernel_thread_stays_free_while_mining(d, ref):
    browser = LayerBrowser(d.model, dataset=SlowDigits(d.dataset), mean=d.mean, layer="conv2")
    browser.show_top = True
    browser.channel = 12  # handled while mining goes on in the background
    assert browser._tasks.running == "features.5"
    assert browser._projection_image.value == expected_projection(
        ref, d, d.dataset[0][0], "conv2", 12
    )
    assert browser._tasks.running == "features.5"
    browser.wait()
    assert [e.image_index for e in browser.top_entries][:1] != []


# ----- the user's model -------------------------------------------------------------------------


def _model_state(model: torch.nn.Module) -> dict:
    return {
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in model.modules()
        ),
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "versions": [t._version for t in list(model.parameters()) + list(model.buffers())],
    }


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_model_is_unchanged_afterwards(d, mode):
    model = demo.load().model.train(mode == "train")
    before = _model_state(model)
    browser = LayerBrowser(model, dataset=d.dataset, mean=d.mean)
    for name, value in [
        ("layer", "conv2"),
        ("channel", 7),
        ("method", "guided"),
        ("method", "saliency"),
        ("method", "gradcam"),
        ("position", "map"),
        ("layer", "fc4"),
        ("image_index", 4),
        ("channel", 999),
    ]:
        setattr(browser, name, value)
    browser.show_top = True
    browser.wait()
    browser.upload(b"junk")
    after = _model_state(model)
    for key in ("hooks", "modes", "requires_grad", "versions"):
        assert before[key] == after[key], key
    assert all(g is None for g in after["grads"])
    for key, value in before["weights"].items():
        assert torch.equal(value, after["weights"][key]), key


def test_a_dataloader_is_mined_and_its_dataset_picked_from(d, ref):
    loader = DataLoader(d.dataset, batch_size=100, shuffle=False)
    browser = LayerBrowser(d.model, dataset=loader, mean=d.mean, layer="conv2", show_top=True)
    browser.wait()
    assert len(browser.source) == len(d.dataset)
    top = mine(ref, d.dataset, layers=["conv2"], progress=False)
    expected = top_projections(ref, top, d.dataset, "conv2", 0)
    assert [e.image_index for e in browser.top_entries] == [e.image_index for e in expected]


def test_an_inspector_is_shared(d):
    insp = Inspector(d.model, device="cpu")
    browser = LayerBrowser(insp, images=d.dataset.images[:5], mean=d.mean)
    assert browser.inspector is insp and insp.cache_info().forwards >= 1
    assert len(browser.source) == 5 and "label" not in browser._input_caption.text


def test_a_missing_class_map_alone_is_said_in_the_help_not_on_screen(browser):
    """The digit net has no global-average-pooling head, so no CAM: said once, in the method
    help (hover), not as a "not offered" line on every digit browser."""
    assert set(browser.absent_methods) == {"cam"}
    assert browser._method_note.value == "" or "not offered" not in browser._method_note.value
    assert not any("zfw-method-note" in c._dom_classes for c in _descendants(browser))
    assert "CAM" in browser._method_toggle.tooltip


def _descendants(widget):
    for child in getattr(widget, "children", ()):
        yield child
        yield from _descendants(child)


def drawn_seven(ink: int, paper: int, side: int = 140) -> bytes:
    """A 7 as a person draws it in a paint program: a bar and a slanted stroke, PNG bytes."""
    from PIL import ImageDraw

    picture = Image.new("L", (side, side), paper)
    draw = ImageDraw.Draw(picture)
    s = side / 28
    draw.line([(7 * s, 7 * s), (21 * s, 7 * s)], fill=ink, width=int(3 * s))
    draw.line([(21 * s, 7 * s), (12 * s, 23 * s)], fill=ink, width=int(3 * s))
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    return buf.getvalue()


def test_a_black_on_white_upload_is_inverted_for_the_white_on_black_digits(browser, d, ref):
    from PIL import ImageOps

    from zfwidgets.core.images import image_from_bytes

    browser.upload(drawn_seven(ink=0, paper=255), "seven.png")
    assert "inverted to match the data set" in browser.status
    assert "light on dark" in browser.status
    assert "black and white swapped" in browser._input_caption.text
    # the reference: Pillow's own inversion of the file, prepared as the digits are
    with Image.open(io.BytesIO(drawn_seven(ink=0, paper=255))) as im:
        buf = io.BytesIO()
        ImageOps.invert(im.convert("L")).save(buf, "PNG")
    expected = image_from_bytes(buf.getvalue(), 1, preprocessing=browser.preprocessing)
    torch.testing.assert_close(browser.image, expected, atol=1e-5, rtol=0)
    best = int(ref.predict(expected).argmax())
    assert f"predicted {d.classes[best]}" in browser._input_caption.text


def test_an_upload_drawn_like_the_digits_is_left_alone(browser):
    from zfwidgets.core.images import image_from_bytes

    data = drawn_seven(ink=255, paper=0)
    browser.upload(data, "seven.png")
    assert "inverted" not in browser.status
    assert "swapped" not in browser._input_caption.text
    expected = image_from_bytes(data, 1, preprocessing=browser.preprocessing)
    torch.testing.assert_close(browser.image, expected)


# ----- issue 32, item 3: a 224 px model beside the grid at 1280x720 with the sidebar open -----


def _photo_model() -> torch.nn.Module:
    """A tiny convnet on 3x224x224 inputs (random weights, fixed seed)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 7, stride=4, padding=3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    ).eval()


def _png_pixels(value: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(value)))


def _block_means_by_hand(picture: np.ndarray, k: int) -> np.ndarray:
    """Each output pixel the rounded mean of its k x k block (the edge's: of what it has)."""
    h, w = picture.shape[:2]
    out = np.zeros(((h + k - 1) // k, (w + k - 1) // k) + picture.shape[2:], picture.dtype)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            block = [
                picture[y, x].astype(float)
                for y in range(i * k, min(h, i * k + k))
                for x in range(j * k, min(w, j * k + k))
            ]
            out[i, j] = np.rint(sum(block) / len(block))
    return out


def test_area_downscale_equals_the_block_means_worked_by_hand():
    from zfwidgets.widgets.parts import area_downscale

    small = np.array([[0, 2, 4, 4], [2, 4, 8, 8], [10, 10, 1, 2], [10, 11, 3, 4]], np.uint8)
    # (0+2+2+4)/4 = 2, (4+4+8+8)/4 = 6, (10+10+10+11)/4 = 10.25, (1+2+3+4)/4 = 2.5 -> 2 (even)
    assert area_downscale(small, 2).tolist() == [[2, 6], [10, 2]]
    rng = np.random.default_rng(3)
    for shape, k in [((224, 224, 3), 2), ((7, 9), 2), ((10, 11, 3), 3)]:
        picture = rng.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(area_downscale(picture, k), _block_means_by_hand(picture, k))
    with pytest.raises(ValueError, match=r"factor must be a whole number >= 1; got 0"):
        area_downscale(small, 0)


def test_a_224_px_model_is_shown_at_one_half_beside_the_grid_and_whole_on_a_wide_screen():
    from zfwidgets.widgets.layer_browser import GRID_WIDTH
    from zfwidgets.widgets.parts import PICTURE_SIDE

    model = _photo_model()
    images = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    browser = LayerBrowser(model, images=images, method="saliency", position="map")
    whole = render.input_image(images[0])  # the picture at 1:1, min..max stretched
    assert whole.shape[:2] == (224, 224)
    drawn = _png_pixels(browser._input_image.value)
    assert np.array_equal(drawn, _block_means_by_hand(whole, 2))
    assert browser._input_caption.text.endswith(" · shown at 1/2")
    assert _png_pixels(browser._projection_image.value).shape[:2] == (112, 112)
    assert browser._projection_caption.text.startswith(
        "saliency projection of all of map 0 · shown at 1/2"
    ), browser._projection_caption.text
    heat = _png_pixels(browser._heat_image.value)  # 28x28 maps: enlarged 6x, not reduced
    assert heat.shape[:2] == (PICTURE_SIDE, PICTURE_SIDE)
    assert "shown at" not in browser._heat_caption.text
    # Grid, pictures and top-9 pair side by side in the 840 px the browser is arranged for.
    assert GRID_WIDTH + 12 + browser._right_base <= 840
    wide = LayerBrowser(model, images=images, fit_width=1200)
    assert np.array_equal(_png_pixels(wide._input_image.value), whole)
    assert "shown at" not in wide._input_caption.text
    for bad in (300, 840.0, "wide", True):
        with pytest.raises(ValueError, match=r"fit_width must be .* from 480 to 8000 .*got"):
            LayerBrowser(model, images=images, fit_width=bad)


def test_digits_are_drawn_as_before_at_six_times(d):
    browser = LayerBrowser(d.model, images=d.dataset.images[:2], mean=d.mean)
    drawn = _png_pixels(browser._input_image.value)
    assert drawn.shape[:2] == (28 * ZOOM, 28 * ZOOM)
    by_hand = render.input_image(d.dataset.images[0], d.mean)
    assert np.array_equal(drawn, by_hand.repeat(ZOOM, 0).repeat(ZOOM, 1))
    assert "shown at" not in browser._input_caption.text


def test_switching_projector_mode_redraws_the_colour_bars_at_once(d):
    import zfwidgets
    from zfwidgets.widgets.parts import NORMAL_BAR_FONT_PX, PROJECTOR_FONT_PX

    browser = LayerBrowser(d.model, images=d.dataset.images[:2], mean=d.mean)
    bars = (browser._grid_bar, browser._heat_bar, browser._projection_bar)
    before = [_png_pixels(b.value).shape[0] for b in bars]
    try:
        zfwidgets.projector(True)
        grown = PROJECTOR_FONT_PX - NORMAL_BAR_FONT_PX  # the bar's text row is font + 6 px
        assert [_png_pixels(b.value).shape[0] for b in bars] == [h + grown for h in before]
        assert browser._bar_slot.layout.height == f"{PROJECTOR_FONT_PX + 22}px"
        # The same values, only larger numbers: drawn by hand at the projector's font size.
        acts = Inspector(d.model).activations(browser.image, browser.layer)[browser.channel]
        lo, hi = float(acts.min()), float(acts.max())
        expected = render.colour_bar(lo, hi, 168, font_size=PROJECTOR_FONT_PX)
        assert np.array_equal(_png_pixels(browser._heat_bar.value), expected)
    finally:
        zfwidgets.projector(False)
    assert [_png_pixels(b.value).shape[0] for b in bars] == before
    assert browser._bar_slot.layout.height == f"{NORMAL_BAR_FONT_PX + 22}px"
