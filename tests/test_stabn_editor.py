"""The temporal-attention editor: its JSON API, and the page driven in a real headless Chromium."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from conftest import headless_chrome
from videoxai.errors import InputError
from videoxai.stabn.data import open_dataset
from videoxai.stabn.editor import create_app
from videoxai.stabn.knowledge import EditSet, collect
from videoxai.stabn.model import build


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build(num_classes=4, num_frames=8, input_size=64).eval()


@pytest.fixture(scope="module")
def collected(tmp_path_factory, model):
    data = open_dataset("synthetic:12", "train")
    return collect(model, data, tmp_path_factory.mktemp("collected") / "edits", model_spec="in-memory",
                   misclassified_only=False, limit=3).directory


@pytest.fixture
def edit_set(tmp_path, collected):
    # a copy of one collection per test: collecting (the model over every clip) took 1.3 s a test
    import shutil

    return EditSet.open(shutil.copytree(collected, tmp_path / "edits"))


@pytest.fixture
def client(edit_set, model):
    return TestClient(create_app(edit_set, model), base_url="http://localhost")


def test_collection_and_clip(client, edit_set):
    c = client.get("/api/collection").json()
    assert c["num_frames"] == 8 and c["levels"] == [1.0, 0.5, 0.0] and c["preview"] is True
    assert [x["key"] for x in c["clips"]] == [it.key for it in edit_set.items]
    first = c["clips"][0]
    assert first["attention"] == edit_set.items[0].attention and first["edited"] is False
    d = client.get(f"/api/clips/{first['key']}").json()
    assert d["levels"] is None and d["frame_size"] == [64, 64]


def test_frames_are_the_collected_pixels(client, edit_set):
    key = edit_set.items[1].key
    frames, spatial = edit_set.clip(key)
    r = client.get(f"/api/clips/{key}/frames/3.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.content))), frames[3])
    over = np.asarray(Image.open(io.BytesIO(client.get(f"/api/clips/{key}/frames/3.png?overlay=spatial").content)))
    assert over.shape == frames[3].shape and not np.array_equal(over, frames[3])
    assert client.get(f"/api/clips/{key}/frames/8.png").json() == {
        "error": f"frame 8 out of range: clip {key} has 8 frames"}


def test_save_fill_delete_and_errors_as_data(client, edit_set):
    key = edit_set.items[0].key
    r = client.post(f"/api/clips/{key}/fill", json={"levels": [1, None, 1, None, None, 0, None, 0]})
    assert r.json() == {"levels": [1, 1, 1, None, None, 0, 0, 0]}
    r = client.put(f"/api/clips/{key}/edit", json={"levels": [1, 1, 1, None, None, 0, 0, 0]})
    assert r.status_code == 422 and "frames 3, 4 have no level" in r.json()["error"]
    r = client.put(f"/api/clips/{key}/edit", json={"levels": [1, 1, 0.3, 0, 0, 0, 0, 0]})
    assert r.status_code == 422 and "level 0.3" in r.json()["error"]
    r = client.put(f"/api/clips/{key}/edit", json={"levels": "high"})
    assert r.status_code == 422 and r.json()["error"].startswith("levels")
    for coerced in (True, "1"):  # not levels, though pydantic's lax mode reads both as 1.0
        r = client.put(f"/api/clips/{key}/edit", json={"levels": [coerced] + [1] * 7})
        assert r.status_code == 422 and r.json()["error"].startswith("levels.0"), r.text
    levels = [1, 1, 1, 0.5, 0, 0, 0, 0]
    r = client.put(f"/api/clips/{key}/edit", json={"levels": levels})
    assert r.status_code == 200 and r.json()["levels"] == levels
    on_disk = json.loads((edit_set.directory / "edits" / f"{key}.json").read_text())
    assert on_disk["levels"] == levels and on_disk["id"] == edit_set.items[0].id
    assert client.get(f"/api/clips/{key}").json()["levels"] == levels
    assert client.delete(f"/api/clips/{key}/edit").json() == {"key": key, "deleted": True}
    assert client.get("/api/clips/nope").status_code == 404
    r = client.put(f"/api/clips/{'x' * 20_000}/edit", json={"levels": levels})  # not echoed whole
    assert r.status_code == 404 and r.json()["error"] == (
        f"no clip 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'… (20000 characters) in edit set {edit_set.directory}")


def test_preview_replaces_the_temporal_attention(client, edit_set, model):
    key = edit_set.items[0].key
    r = client.post(f"/api/clips/{key}/preview", json={"levels": [None] * 8}).json()
    assert r["original"] == r["edited"]                  # unset frames keep the model's own M_t
    r = client.post(f"/api/clips/{key}/preview", json={"levels": [0.0] * 4 + [1.0] * 4}).json()
    assert r["edited"]["temporal"] == [0.0] * 4 + [1.0] * 4
    frames, _ = edit_set.clip(key)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255
    with torch.no_grad():
        expected = model.outputs(x, temporal_override=torch.tensor([0.0] * 4 + [1.0] * 4)).logits.softmax(-1)[0]
    np.testing.assert_allclose(r["edited"]["probs"], expected.numpy(), atol=1e-5)
    no_model = TestClient(create_app(edit_set, None), base_url="http://127.0.0.1:8001")
    r = no_model.post(f"/api/clips/{key}/preview", json={"levels": [1.0] * 8})
    assert r.status_code == 422 and "preview needs the model" in r.json()["error"]


def test_a_label_the_collection_cannot_name_is_an_error_not_a_500(edit_set, model):
    """A collection made before `collect` checked the classes (a 2-class model over the 4-class
    set: labels 2 and 3 for 2 names): opening it is refused naming the clip; an edit set in
    memory with such a clip gets a JSON error from the editor, not a 500."""
    path = edit_set.directory / "collection.json"
    d = json.loads(path.read_text())
    d["labels"] = d["labels"][:2]
    d["items"][0]["label"] = d["items"][0]["predicted"] = 0
    d["items"][1]["label"] = 3
    path.write_text(json.dumps(d))
    bad = edit_set.items[1].key
    with pytest.raises(InputError, match=rf"collection.json: clip {bad} has label 3, not one of the collection's 2 classes"):
        EditSet.open(edit_set.directory)

    edit_set.labels = edit_set.labels[:2]
    edit_set.items[0].label, edit_set.items[0].predicted, edit_set.items[1].label = 0, 2, 3
    # no preview model: one of 4 classes is refused for a collection of 2 at the start
    client = TestClient(create_app(edit_set, None), base_url="http://localhost", raise_server_exceptions=False)
    r = client.get(f"/api/clips/{bad}")
    assert r.status_code == 422 and f"clip {bad} has label 3" in r.json()["error"]
    r = client.get(f"/api/clips/{edit_set.items[0].key}")
    assert r.status_code == 422 and "has predicted 2" in r.json()["error"]
    r = client.get("/api/collection")
    assert r.status_code == 422 and "not one of the collection's 2 classes" in r.json()["error"]


# -- the page in a real browser ---------------------------------------------------------------------
@pytest.fixture
def served(edit_set, model):
    yield from _serve(create_app(edit_set, model))


def _serve(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the editor server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class _Page:
    """The editor's page in a headless Chromium, loaded until its clip list is ready (what every
    browser test first does); a context manager that closes the browser."""

    def __init__(self, url: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.by = By
        self.browser = headless_chrome()
        self.wait = WebDriverWait(self.browser, 20)
        try:
            self.browser.get(url)
            self.wait_ready()
        except BaseException:
            self.browser.quit()
            raise

    def __enter__(self) -> "_Page":
        return self

    def __exit__(self, *exc) -> None:
        self.browser.quit()

    def wait_ready(self) -> None:
        self.wait.until(lambda b: b.find_element(self.by.TAG_NAME, "body").get_attribute("data-ready") == "true")

    def find(self, css: str):
        return self.browser.find_element(self.by.CSS_SELECTOR, css)

    def button(self, id: str):
        return self.browser.find_element(self.by.ID, id)

    def clip(self, key: str):
        """Clip ``key``'s entry in the list (found anew: the list is rebuilt when a clip opens)."""
        return self.find(f'#clips li[data-key="{key}"]')

    def frame(self, t: int):
        return self.find(f'.frame[data-t="{t}"]')

    def current(self) -> str | None:
        # read in one script: the list is rebuilt when a clip opens (a found <li> goes stale)
        return self.browser.execute_script('return document.querySelector("#clips li.current")?.dataset.key')

    def open(self, key: str) -> None:
        """Click clip ``key`` (nothing unsaved on the open one: no question) and wait for its 8 frames."""
        self.clip(key).click()
        self.wait.until(lambda b: self.current() == key and len(b.find_elements(self.by.CSS_SELECTOR, ".frame img")) == 8)

    def status(self) -> str:
        return self.find("#status").text


@pytest.fixture
def page(served):
    with _Page(served) as p:
        yield p


def test_editor_page_sets_levels_fills_previews_and_saves(page, edit_set):
    By, wait = page.by, page.wait
    level = lambda t: page.frame(t).get_attribute("data-level")  # noqa: E731
    key = edit_set.items[1].key
    page.open(key)
    # every frame shows its image (served by the API) and the model's attention
    wait.until(lambda b: all(b.execute_script("return arguments[0].naturalWidth", img) == 64
                             for img in b.find_elements(By.CSS_SELECTOR, ".frame img")))
    assert not page.button("save").is_enabled()                   # nothing set yet

    page.button("level-1").click()
    page.frame(1).click()
    page.frame(4).click()
    assert (level(1), level(2), level(4)) == ("1", None, "1")
    page.button("fill").click()                                   # 2 and 3 lie between two 1.0s
    wait.until(lambda b: level(2) == "1" and level(3) == "1")
    page.button("level-0").click()
    for t in (0, 5, 6, 7):
        page.frame(t).click()
    page.button("level-0.5").click()
    page.frame(7).click()                                         # change of mind: 0.5
    assert [level(t) for t in range(8)] == ["0", "1", "1", "1", "1", "0", "0", "0.5"]

    page.button("preview").click()
    wait.until(lambda b: b.find_elements(By.ID, "preview-table"))
    rows = page.browser.find_elements(By.CSS_SELECTOR, "#preview-table tr")
    assert len(rows) == 3 and "0.00 1.00 1.00 1.00 1.00 0.00 0.00 0.50" in rows[2].text

    page.button("save").click()
    wait.until(lambda b: "saved edit of" in page.status())
    saved = json.loads((edit_set.directory / "edits" / f"{key}.json").read_text())
    assert saved["levels"] == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.5]
    assert "edited" in page.clip(key).get_attribute("class")

    page.browser.refresh()                                        # the saved edit comes back
    page.wait_ready()
    page.open(key)
    assert [level(t) for t in range(8)] == ["0", "1", "1", "1", "1", "0", "0", "0.5"]
    assert EditSet.open(edit_set.directory).edits()[edit_set.items[1].id].levels == saved["levels"]


def _collect_more(model, edit_set, clips: int) -> None:
    """``videoxai stabn collect`` into the editor's folder again, keeping more clips."""
    collect(model, open_dataset("synthetic:12", "train"), edit_set.directory, model_spec="in-memory",
            misclassified_only=False, limit=clips)


def test_clips_collected_while_the_editor_runs_are_served_and_saved_edits_kept(client, edit_set, model):
    # the editor served the list it read at start: clips collected into its folder meanwhile could
    # be neither listed nor opened ('no clip …'), until it was restarted
    first = edit_set.items[0].key
    assert client.put(f"/api/clips/{first}/edit", json={"levels": [1.0] * 8}).status_code == 200
    assert len(client.get("/api/collection").json()["clips"]) == 3
    _collect_more(model, edit_set, 5)
    clips = client.get("/api/collection").json()["clips"]
    now = EditSet.open(edit_set.directory)
    assert [c["key"] for c in clips] == [it.key for it in now.items] and len(clips) == 5
    assert [c["edited"] for c in clips] == [True, False, False, False, False]   # the saved edit is kept
    new = now.items[4]
    d = client.get(f"/api/clips/{new.key}").json()
    assert d["id"] == new.id and d["attention"] == new.attention and d["levels"] is None, d
    frames, _ = now.clip(new.key)
    png = client.get(f"/api/clips/{new.key}/frames/2.png")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png.content))), frames[2])
    assert client.get(f"/api/clips/{first}").json()["levels"] == [1.0] * 8
    assert client.put(f"/api/clips/{new.key}/edit", json={"levels": [0.0] * 8}).status_code == 200
    assert EditSet.open(edit_set.directory).edit(new.key).levels == [0.0] * 8
    # a collection that cannot be read now is an error naming it, not the old list
    (edit_set.directory / "collection.json").write_text("{")
    r = client.get("/api/collection")
    assert r.status_code == 422 and "collection.json is not valid JSON" in r.json()["error"], r.text


def test_a_collection_rewritten_for_other_classes_turns_the_preview_off_saying_why(client, edit_set):
    key = edit_set.items[0].key
    assert client.post(f"/api/clips/{key}/preview", json={"levels": [1.0] * 8}).status_code == 200
    path = edit_set.directory / "collection.json"
    d = json.loads(path.read_text())
    d["labels"] = ["v", "w", "x", "y", "z"]   # collected again from a model of five classes
    path.write_text(json.dumps(d))
    assert client.get("/api/collection").json()["preview"] is False
    r = client.post(f"/api/clips/{key}/preview", json={"levels": [1.0] * 8})
    assert r.status_code == 422 and r.json()["error"].startswith("no preview: the edits in "), r.text
    assert "['v', 'w', 'x', 'y', 'z']" in r.json()["error"]
    assert client.get(f"/api/clips/{key}").json()["label_name"] in ("v", "w", "x", "y", "z")  # the new names


def test_the_page_lists_clips_collected_meanwhile_and_keeps_unsaved_levels(page, edit_set, model):
    key = edit_set.items[1].key
    page.open(key)
    page.button("level-0").click()
    page.frame(3).click()                                          # a level not saved yet
    _collect_more(model, edit_set, 5)
    page.browser.execute_script("window.dispatchEvent(new Event('focus'))")   # the person comes back
    page.wait.until(lambda b: len(b.find_elements(page.by.CSS_SELECTOR, "#clips li")) == 5)
    assert "5 clips" in page.find("#source").text
    assert page.current() == key and page.frame(3).get_attribute("data-level") == "0"
    assert page.button("save").is_enabled() is False               # 7 frames still unset
    new = EditSet.open(edit_set.directory).items[4].key
    page.clip(new).click()                                          # the new clip opens (once let go)
    page.wait.until(lambda b: "not saved" in b.switch_to.alert.text)
    page.browser.switch_to.alert.accept()
    page.wait.until(lambda b: page.current() == new and len(b.find_elements(page.by.CSS_SELECTOR, ".frame")) == 8)


def test_editor_refuses_a_foreign_host_name(edit_set, model):
    # DNS rebinding: a page re-pointed at the editor sends its own name; it must not read or write edits
    foreign = TestClient(create_app(edit_set, model), base_url="http://evil.example:8001")
    r = foreign.get("/api/collection")
    # in the editor's own error shape ({"error": message}, which its page shows), naming its --host
    assert r.status_code == 400 and r.json() == {
        "error": "this server does not answer to the name 'evil.example:8001'; start the editor with "
                 "--host NAME if that is its name"}
    named = TestClient(create_app(edit_set, model, allowed_hosts=("labeller.lan",)), base_url="http://labeller.lan")
    assert named.get("/api/collection").status_code == 200


def test_class_names_in_the_preview_are_text_not_markup(tmp_path):
    # the preview table was built with innerHTML from the model's class names (a user's labels.csv,
    # an HF config): an <img onerror> label ran its script
    torch.manual_seed(0)
    model = build(num_classes=4, num_frames=8, input_size=64).eval()
    es = collect(model, open_dataset("synthetic:12", "train"), tmp_path / "edits", model_spec="in-memory",
                 misclassified_only=False, limit=1)
    hostile = "<img src=x onerror=window.__pwned=1> a < b"
    model.labels = [hostile] * 4
    server = _serve(create_app(es, model))
    try:
        with _Page(next(server)) as page:
            By, browser = page.by, page.browser
            page.open(es.items[0].key)
            page.button("preview").click()
            page.wait.until(lambda b: b.find_elements(By.ID, "preview-table"))
            rows = browser.find_elements(By.CSS_SELECTOR, "#preview-table tr")
            assert len(rows) == 3 and rows[0].text.split() == ["temporal", "attention", "prediction", "probability",
                                                               "Mt", "used"]
            assert browser.execute_script("return window.__pwned") is None
            assert not browser.find_elements(By.CSS_SELECTOR, "#preview-table img")
            assert hostile in rows[1].text and hostile in rows[2].text      # shown as written
    finally:
        next(server, None)


def test_the_editor_page_carries_a_content_security_policy(client):
    from videoxai.core.page_headers import PAGE_POLICY

    for path in ("/", "/static/editor.js"):
        r = client.get(path)
        assert r.headers["content-security-policy"] == PAGE_POLICY and r.headers["x-frame-options"] == "DENY"


# -- hostile input ----------------------------------------------------------------------------------
def test_concurrent_saves_of_one_clip_leave_one_complete_edit(client, edit_set):
    """The app saves from a thread pool; every save wrote through the same `<key>.tmp`, so one
    save renamed another's file away (a 500: FileNotFoundError) or renamed a mix of both. Now
    every save answers 200, the last rename wins, and only the edit file is left."""
    key = edit_set.items[0].key
    written = [[(1.0, 0.5, 0.0)[(i + t) % 3] for t in range(8)] for i in range(6)]
    statuses: list[int] = []
    c = TestClient(client.app, base_url="http://localhost", raise_server_exceptions=False)

    def save(levels):
        for _ in range(25):
            statuses.append(c.put(f"/api/clips/{key}/edit", json={"levels": levels}).status_code)

    threads = [threading.Thread(target=save, args=(levels,)) for levels in written]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 150
    assert [p.name for p in (edit_set.directory / "edits").iterdir()] == [f"{key}.json"]
    assert edit_set.edit(key).levels in written


def test_a_body_too_large_is_refused_before_it_is_parsed(client, edit_set):
    # 400 000 levels of valid JSON (2 MB) were read and parsed in full before the frame count
    # refused them (422); the editor reads at most 1 MiB
    key = edit_set.items[0].key
    big = b'{"levels": [' + b"1.0, " * 400_000 + b"1.0]}"
    expected = {"error": "request body larger than 1048576 bytes"}
    r = client.put(f"/api/clips/{key}/edit", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json() == expected
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))  # no Content-Length: chunked
    r = client.put(f"/api/clips/{key}/edit", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json() == expected
    assert edit_set.edit(key) is None
    assert client.put(f"/api/clips/{key}/edit", json={"levels": [1.0] * 8}).status_code == 200


def test_fill_wants_one_level_per_frame(client, edit_set):
    # save and preview refused another count; fill answered levels for 3 frames of an 8-frame clip
    key = edit_set.items[0].key
    r = client.post(f"/api/clips/{key}/fill", json={"levels": [1.0, None, 1.0]})
    assert r.status_code == 422 and r.json() == {"error": f"clip {key} has 8 frames, got 3 levels"}


def test_an_editor_with_a_model_of_other_clips_is_refused_at_the_start(edit_set):
    # `stabn edit --model M` with a 4-frame M: every preview was refused, one at a time
    torch.manual_seed(0)
    four = build(num_classes=4, num_frames=4, input_size=64).eval()
    with pytest.raises(InputError, match="have 8 levels per clip .* takes 4 frames"):
        create_app(edit_set, four)


def test_an_editor_with_a_model_of_other_classes_is_refused_at_the_start(edit_set):
    # the preview named the other model's class beside the collection's true class, of another label space
    torch.manual_seed(0)
    five = build(num_classes=5, num_frames=8, input_size=64).eval()
    with pytest.raises(InputError, match=r"are of the classes \['class_0', 'class_1', 'class_2', 'class_3'\] "
                                         r"\(collected from in-memory\); .*'s are \['class_0', .*'class_4'\]"):
        create_app(edit_set, five)
    named = build(num_classes=4, num_frames=8, input_size=64).eval()
    named.labels = ["cat", "dog", "eel", "fox"]
    create_app(edit_set, named)  # the collection's classes have no names: the same four may be named
    edit_set.labels = ["ant", "bee", "cow", "doe"]
    with pytest.raises(InputError, match=r"are of the classes \['ant', 'bee', 'cow', 'doe'\]"):
        create_app(edit_set, named)


def test_a_missing_or_damaged_clip_archive_is_an_error_naming_it_not_a_500(edit_set, model):
    k0, k1, k2 = (it.key for it in edit_set.items)
    (edit_set.directory / "clips" / f"{k0}.npz").unlink()
    (edit_set.directory / "clips" / f"{k1}.npz").write_bytes(b"not an archive")
    np.savez(edit_set.directory / "clips" / f"{k2}.npz", frames=np.zeros((8, 8, 8)), spatial=np.zeros((8, 2, 2)))
    client = TestClient(create_app(edit_set, model), base_url="http://localhost", raise_server_exceptions=False)
    for key, said in ((k0, f"cannot read clip {k0} from "), (k1, f"cannot read clip {k1} from "),
                      (k2, "frames must be (8, H, W, 3) uint8, got (8, 8, 8) float64")):
        for r in (client.get(f"/api/clips/{key}"), client.get(f"/api/clips/{key}/frames/0.png"),
                  client.post(f"/api/clips/{key}/preview", json={"levels": [1.0] * 8})):
            assert r.status_code == 422 and said in r.json()["error"], r.text


def test_unknown_paths_and_methods_answer_in_the_apis_error_shape(client, edit_set):
    # routing answered {"detail": "Not Found"}; the page shows data.error, and fell back to "404 Not Found"
    key = edit_set.items[0].key
    r = client.put("/api/clips/..%2F..%2Fcollection.json/edit", json={"levels": [1.0] * 8})
    assert r.status_code == 404 and r.json() == {"error": "Not Found: PUT /api/clips/../../collection.json/edit"}
    r = client.post(f"/api/clips/{key}")
    assert r.status_code == 405 and r.json() == {"error": f"Method Not Allowed: POST /api/clips/{key}"}
    assert "GET" in r.headers["allow"]


def test_the_page_reaches_the_editor_behind_a_proxy_that_serves_it_under_a_prefix(edit_set, model):
    """Behind a path-prefix proxy (JupyterHub's /user/NAME/proxy/PORT/, a reverse proxy's /edit/)
    the page loaded /static/… and /api/… from the site's root: no script, no clips. Every URL of
    the page and its script is relative, and each one resolves below the prefix."""
    import re

    from videoxai.stabn.editor.app import STATIC

    c = TestClient(create_app(edit_set, model), base_url="http://localhost", root_path="/edit")
    page = c.get("/edit/").text
    script = (STATIC / "editor.js").read_text()
    urls = re.findall(r'(?:href|src)="([^"]+)"', page) + re.findall(r'["`]((?:/?api|/?static)/[^"`$?]*)', script)
    assert {"static/editor.css", "static/editor.js", "api/collection", "api/clips/"} <= set(urls), urls
    assert not [u for u in urls if u.startswith("/")], urls
    key = edit_set.items[0].key
    for u in ("static/editor.css", "static/editor.js", "api/collection", f"api/clips/{key}", f"api/clips/{key}/frames/0.png"):
        assert c.get(f"/edit/{u}").status_code == 200, u


def test_a_damaged_edit_file_is_said_and_the_clip_still_opens_to_replace_it(client, edit_set):
    """A saved edit of 7 levels for an 8-frame clip was shown as the clip's edit (the page then
    failed on the missing level), another clip's file was shown as this one's, and a file cut
    short made the clip unopenable (422), so the page could not replace it. Now each clip opens
    with no levels and the reason, and saving writes a good edit over the damaged one."""
    items = edit_set.items
    edits = edit_set.directory / "edits"
    edits.mkdir(exist_ok=True)
    (edits / f"{items[0].key}.json").write_text(json.dumps({"id": items[0].id, "levels": [1.0] * 7}))
    (edits / f"{items[1].key}.json").write_text(json.dumps({"id": items[2].id, "levels": [1.0] * 8}))
    (edits / f"{items[2].key}.json").write_text('{"id": "x", "lev')
    said = {items[0].key: "7 levels for the clip's 8 frames",
            items[1].key: f"is the edit of clip {items[2].id!r}, but {items[1].key} is clip {items[1].id!r}",
            items[2].key: "cannot read edit "}
    for it in items:
        r = client.get(f"/api/clips/{it.key}")
        assert r.status_code == 200 and r.json()["levels"] is None, r.text
        assert str(edits / f"{it.key}.json") in r.json()["edit_error"] and said[it.key] in r.json()["edit_error"]
        assert client.put(f"/api/clips/{it.key}/edit", json={"levels": [0.5] * 8}).status_code == 200
        r = client.get(f"/api/clips/{it.key}").json()
        assert r["levels"] == [0.5] * 8 and r["edit_error"] is None
    assert sorted(edit_set.edits()) == sorted(it.id for it in items)


def test_an_edit_deleted_by_another_client_meanwhile_is_no_edit_not_an_error(client, edit_set, monkeypatch):
    """Two clients deleting one edit, or one reading it (the page, `stabn finetune`) while another
    deletes it: the file was looked at, then gone when removed or read — a 500
    (FileNotFoundError) or 'cannot read edit'. The other client's delete is simulated just
    before the file is removed or read."""
    from pathlib import Path

    key = edit_set.items[0].key
    path = edit_set.directory / "edits" / f"{key}.json"
    real_unlink, real_read = Path.unlink, Path.read_text

    def deleted_first(method):
        def call(self, *args, **kwargs):
            if self == path and path.exists():
                real_unlink(path)  # the other client
            return method(self, *args, **kwargs)
        return call

    c = TestClient(client.app, base_url="http://localhost", raise_server_exceptions=False)
    for patched, request in ((("unlink", real_unlink), lambda: c.delete(f"/api/clips/{key}/edit")),
                             (("read_text", real_read), lambda: c.get(f"/api/clips/{key}"))):
        assert c.put(f"/api/clips/{key}/edit", json={"levels": [1.0] * 8}).status_code == 200
        with monkeypatch.context() as m:
            m.setattr(Path, patched[0], deleted_first(patched[1]))
            r = request()
            assert r.status_code == 200, r.text
            assert r.json().get("deleted", False) is False and r.json().get("levels") is None
            assert r.json().get("edit_error") is None
    assert edit_set.edit(key) is None and edit_set.edits() == {}


def test_a_level_of_minus_zero_is_saved_as_zero(client, edit_set):
    # JSON -0.0 equals the level 0.0 and was stored as written: "-0.0" in the edit file
    key = edit_set.items[0].key
    r = client.put(f"/api/clips/{key}/edit", json={"levels": [-0.0] + [1.0] * 7})
    assert r.status_code == 200 and r.json()["levels"][0] == 0.0
    text = (edit_set.directory / "edits" / f"{key}.json").read_text()
    assert "-0.0" not in text and json.loads(text)["levels"] == [0.0] + [1.0] * 7


def test_a_request_body_that_is_not_a_json_object_is_told_so(client, edit_set):
    # the messages were ": Field required", ": Input should be a valid dictionary …" (an empty
    # location) and "14: JSON decode error" (a character offset as the location)
    url = f"/api/clips/{edit_set.items[0].key}/edit"
    must = 'the request body must be a JSON object {"levels": [...]} sent as application/json'
    for content, kind, said in ((b"", "application/json", f"{must} (got application/json): Field required"),
                                (b"[1, 1]", "application/json", f"{must} (got application/json): Input should be"),
                                (json.dumps({"levels": [1.0] * 8}).encode(), "text/plain", f"{must} (got text/plain)"),
                                (b'{"levels": [1,', "application/json",
                                 "the request body is not JSON: Expecting value at character 14")):
        r = client.put(url, content=content, headers={"content-type": kind})
        assert r.status_code == 422 and r.json()["error"].startswith(said), r.text
    assert edit_set.edit(edit_set.items[0].key) is None


def test_a_file_system_error_is_a_json_error_naming_the_file(edit_set, model):
    # an edit that cannot be written (here its name is taken by a folder; a read-only or full
    # disk alike) was a bare 500 "Internal Server Error", shown by the page without a cause
    key = edit_set.items[0].key
    blocked = edit_set.directory / "edits" / f"{key}.json"
    blocked.mkdir(parents=True)
    c = TestClient(create_app(edit_set, model), base_url="http://localhost", raise_server_exceptions=False)
    r = c.put(f"/api/clips/{key}/edit", json={"levels": [1.0] * 8})
    assert r.status_code == 500 and r.json()["error"].startswith(f"PUT /api/clips/{key}/edit: [Errno")
    assert str(blocked) in r.json()["error"]
    assert blocked.is_dir() and [p.name for p in blocked.parent.iterdir()] == [blocked.name]  # no temporary left
    assert c.get("/api/collection").status_code == 200
    blocked.rmdir()
    blocked.parent.rmdir()
    blocked.parent.write_text("not a folder")  # no edits/ folder: no edit to delete (was a 500)
    assert c.delete(f"/api/clips/{key}/edit").json() == {"key": key, "deleted": False}


def test_the_page_keeps_unsaved_levels_until_the_person_lets_them_go(page, edit_set):
    """Clicking another clip dropped the levels set on this one without a word, and Save was
    enabled on an edit just loaded, unchanged (the docs: disabled until something changed)."""
    a, b = (it.key for it in edit_set.items[:2])
    edit_set.save_edit(b, [1.0] * 8)
    save = lambda: page.button("save")  # noqa: E731
    page.open(b)
    assert page.frame(0).get_attribute("data-level") == "1" and not save().is_enabled()  # loaded, unchanged
    page.button("level-0").click()
    page.frame(0).click()
    assert save().is_enabled()
    page.clip(a).click()
    page.wait.until(lambda br: "not saved" in br.switch_to.alert.text)
    page.browser.switch_to.alert.dismiss()                               # stay: the level is kept
    assert page.current() == b and page.frame(0).get_attribute("data-level") == "0"
    page.clip(a).click()
    page.wait.until(lambda br: "not saved" in br.switch_to.alert.text)
    page.browser.switch_to.alert.accept()                                # go: the other clip opens
    page.wait.until(lambda br: page.current() == a)
    assert edit_set.edit(b).levels == [1.0] * 8


def test_a_clip_archive_of_no_pixels_or_a_nan_map_is_an_error_naming_it(edit_set, model):
    # frames or a spatial map of size 0 were a 500 (PNG, overlay resize, preview); a NaN map was
    # drawn in whatever colour NaN cast to uint8 gives
    k0, k1, k2 = (it.key for it in edit_set.items)
    clips = edit_set.directory / "clips"
    np.savez(clips / f"{k0}.npz", frames=np.zeros((8, 64, 64, 3), np.uint8), spatial=np.zeros((8, 0, 0), np.float32))
    np.savez(clips / f"{k1}.npz", frames=np.zeros((8, 0, 0, 3), np.uint8), spatial=np.zeros((8, 2, 2), np.float32))
    np.savez(clips / f"{k2}.npz", frames=np.zeros((8, 64, 64, 3), np.uint8), spatial=np.full((8, 2, 2), np.nan, np.float32))
    client = TestClient(create_app(edit_set, model), base_url="http://localhost", raise_server_exceptions=False)
    for key, said in ((k0, "spatial attention must be (8, h, w) floats, got (8, 0, 0) float32"),
                      (k1, "frames must be (8, H, W, 3) uint8, got (8, 0, 0, 3) uint8"),
                      (k2, "spatial attention has non-finite values")):
        for r in (client.get(f"/api/clips/{key}/frames/0.png?overlay=spatial"),
                  client.post(f"/api/clips/{key}/preview", json={"levels": [1.0] * 8})):
            assert r.status_code == 422 and f"{clips / key}.npz: {said}" in r.json()["error"], r.text


def test_the_page_and_the_api_answer_head(client, edit_set):
    # HEAD / was a 405 (the service answers it): `curl -I` and uptime monitors read the editor as down
    key = edit_set.items[0].key
    for path in ("/", "/static/editor.js", "/api/collection", f"/api/clips/{key}", f"/api/clips/{key}/frames/0.png"):
        head, got = client.head(path), client.get(path)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
    assert client.head("/api/clips/nope").status_code == 404
    assert "head" not in client.get("/openapi.json").json()["paths"]["/api/collection"]


# installed in the page: window.__pending counts the API answers in flight, one less once the code
# awaiting the answer has run (a task after its body is read); window.__sent the methods sent
COUNT_ANSWERS = """window.__pending = 0; window.__sent = []; const f = window.fetch;
    window.fetch = async (...a) => { window.__pending++; window.__sent.push((a[1] || {}).method || "GET");
      const r = await f(...a); const j = r.json.bind(r);
      r.json = () => j().finally(() => setTimeout(() => window.__pending--, 0)); return r; };"""


def test_an_answer_that_comes_back_after_another_clip_opened_stays_with_its_clip(page, edit_set, monkeypatch):
    """A preview (seconds on a CPU) or save of clip A answered after the person opened clip B:
    A's prediction was shown under B, and B was marked saved with A's levels as its own. Each
    request is held until B is open; the page counts the answers it has handled."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.support.ui import WebDriverWait

    import videoxai.stabn.editor.app as editor_app

    asked, release = threading.Event(), threading.Event()

    def held(real):
        def call(*args, **kwargs):
            asked.set()
            release.wait(30)
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(editor_app, "preview", held(editor_app.preview))
    monkeypatch.setattr(edit_set, "save_edit", held(edit_set.save_edit))
    browser, By = page.browser, page.by
    wait = WebDriverWait(browser, 20, ignored_exceptions=(NoAlertPresentException,))
    a, b = (it.key for it in edit_set.items[:2])
    classes = lambda k: page.clip(k).get_attribute("class")  # noqa: E731
    try:
        browser.execute_script(COUNT_ANSWERS)
        for button in ("preview", "save"):
            asked.clear(), release.clear()
            page.open(a)                                            # from B: nothing set
            page.button("from-attention").click()                   # every frame set: unsaved
            page.button(button).click()
            assert asked.wait(20)
            page.clip(b).click()
            wait.until(lambda br: "not saved" in br.switch_to.alert.text)
            browser.switch_to.alert.accept()
            wait.until(lambda br: page.current() == b and br.execute_script("return window.__pending") == 1)  # A's
            release.set()
            wait.until(lambda br: br.execute_script("return window.__pending") == 0)
            assert not browser.find_elements(By.ID, "preview-table"), button    # not A's prediction under B
            assert browser.execute_script("return document.querySelectorAll('.frame[data-level]').length") == 0
            assert not page.button("save").is_enabled()
        assert "edited" in classes(a) and "edited" not in classes(b)
        assert "saved edit of" in page.status()
        assert edit_set.edit(a) is not None and edit_set.edit(b) is None
    finally:
        release.set()


def test_a_save_over_an_edit_saved_by_someone_else_since_is_refused(client, edit_set):
    """Two people on one clip: the second save overwrote the first one's edit without a word. A
    save names the version it replaces (null: none); another version there is a 409, and the
    saved edit stays. A save naming none replaces whatever is saved, as before."""
    key = edit_set.items[0].key
    url = f"/api/clips/{key}/edit"
    assert client.get(f"/api/clips/{key}").json()["version"] is None
    first = client.put(url, json={"levels": [1.0] * 8, "version": None})
    assert first.status_code == 200
    v1 = first.json()["version"]
    assert client.get(f"/api/clips/{key}").json()["version"] == v1
    late = client.put(url, json={"levels": [0.0] * 8, "version": None})     # opened before the first save
    assert late.status_code == 409 and late.json()["error"] == (
        f"clip {key} was saved by someone else since it was opened (its edit is now version {v1}, not none): "
        "open the clip again to see that edit, then save")
    assert edit_set.edit(key).levels == [1.0] * 8
    second = client.put(url, json={"levels": [0.5] * 8, "version": v1})
    assert second.status_code == 200 and second.json()["version"] not in (None, v1)
    assert client.put(url, json={"levels": [0.0] * 8, "version": v1}).status_code == 409
    r = client.put(url, json={"levels": [0.0] * 8, "version": "x" * 100_000})  # not echoed whole
    assert r.status_code == 409 and len(r.json()["error"]) < 300
    client.delete(url)
    r = client.put(url, json={"levels": [0.0] * 8, "version": second.json()["version"]})
    assert r.status_code == 409 and "its edit is now deleted" in r.json()["error"]
    assert client.put(url, json={"levels": [0.0] * 8}).status_code == 200      # no version: replaces
    assert edit_set.edit(key).levels == [0.0] * 8


def test_the_page_does_not_save_over_an_edit_saved_meanwhile(page, edit_set):
    key = edit_set.items[0].key
    page.open(key)
    edit_set.save_edit(key, [0.5] * 8)                               # another person, meanwhile
    page.button("from-attention").click()
    page.button("save").click()
    page.wait.until(lambda br: "saved by someone else" in page.status())
    assert edit_set.edit(key).levels == [0.5] * 8


def test_a_double_click_on_save_saves_once(page, edit_set):
    # Save stayed enabled while its request was out: the second click sent the version the first
    # had just replaced, and was refused as "saved by someone else"
    key = edit_set.items[0].key
    browser = page.browser
    browser.execute_script(COUNT_ANSWERS)
    page.open(key)
    page.button("from-attention").click()
    browser.execute_script("const s = document.getElementById('save'); s.click(); s.click();")
    page.wait.until(lambda br: br.execute_script("return window.__pending") == 0)
    assert browser.execute_script("return window.__sent").count("PUT") == 1
    assert page.status().startswith("saved edit of"), page.status()
    assert not page.button("save").is_enabled() and edit_set.edit(key) is not None


def test_the_clip_clicked_last_is_the_one_that_opens(page, edit_set, monkeypatch):
    # clicking clip A, then B before A had opened: A's slower answer opened A over B
    a, b = (it.key for it in edit_set.items[:2])
    asked, release = threading.Event(), threading.Event()
    real = edit_set.edit

    def held(key):
        if key == a:
            asked.set()
            release.wait(30)
        return real(key)

    monkeypatch.setattr(edit_set, "edit", held)
    browser = page.browser
    try:
        browser.execute_script(COUNT_ANSWERS)
        page.clip(a).click()
        assert asked.wait(20)
        page.clip(b).click()
        page.wait.until(lambda br: page.current() == b)
        release.set()
        page.wait.until(lambda br: br.execute_script("return window.__pending") == 0)
        assert page.current() == b
        srcs = [img.get_attribute("src") for img in browser.find_elements(page.by.CSS_SELECTOR, ".frame img")]
        assert len(srcs) == 8 and all(f"/api/clips/{b}/frames/" in s for s in srcs)
    finally:
        release.set()


def test_a_saved_edit_reaches_the_disk_before_it_replaces_the_old_one(client, edit_set, monkeypatch):
    # written and renamed without a flush to the disk: after a power cut the rename could outlive
    # the data, an empty edit file under the clip's name
    import os

    key = edit_set.items[0].key
    path = edit_set.directory / "edits" / f"{key}.json"
    assert client.put(f"/api/clips/{key}/edit", json={"levels": [1.0] * 8}).status_code == 200
    synced: list[tuple[bytes, bytes]] = []

    def fsync(fd):  # what the file being synced holds, and what the edit's name holds meanwhile
        (tmp,) = (p for p in path.parent.iterdir() if p.name.endswith(".tmp"))
        synced.append((tmp.read_bytes(), path.read_bytes()))

    monkeypatch.setattr(os, "fsync", fsync)
    r = client.put(f"/api/clips/{key}/edit", json={"levels": [0.5] * 8})
    assert r.status_code == 200
    assert len(synced) == 1
    new, old = synced[0]
    assert json.loads(new)["levels"] == [0.5] * 8 and json.loads(old)["levels"] == [1.0] * 8
    assert path.read_bytes() == new


def test_a_save_killed_before_its_rename_leaves_no_temporary_file_behind_for_good(client, edit_set, monkeypatch):
    """A process killed (SIGKILL, power cut) while it saved an edit left its temporary file
    (``.KEY.json.<hex>.tmp``, complete or cut short) beside the edits for good: its ``finally``
    never ran. The next start, or the next save, removes such files once they are older than a
    live save's (a younger one may be a concurrent save's), and they are never read as edits."""
    import os
    from pathlib import Path

    import videoxai.stabn.atomic as atomic

    class Killed(BaseException):
        pass

    def killed(fd):
        raise Killed

    a, b, c = (it.key for it in edit_set.items)
    edits = edit_set.directory / "edits"
    for key in (a, b):  # killed between the write and the rename: no finally runs after SIGKILL
        with monkeypatch.context() as m:
            m.setattr(atomic.os, "fsync", killed)
            m.setattr(Path, "unlink", lambda self, missing_ok=False: None)
            with pytest.raises(Killed):
                edit_set.save_edit(key, [1.0] * 8)
    stale, young = sorted(edits.iterdir(), key=lambda p: not p.name.startswith(f".{a}.json."))
    assert json.loads(stale.read_text())["levels"] == [1.0] * 8  # a whole edit, under no edit's name
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    others = [edits / ".notes.tmp", edits / f"{a}.json.tmp", edits / f".{a}.json.{'z' * 32}.tmp"]  # not its names
    for p in others:
        p.write_text("{}")
        os.utime(p, (hour_ago, hour_ago))
    # never read as edits: not by the page, nor by fine-tuning
    assert not any(clip["edited"] for clip in client.get("/api/collection").json()["clips"])
    assert client.get(f"/api/clips/{a}").json()["levels"] is None and edit_set.edits() == {}

    EditSet.open(edit_set.directory)  # the next start: the dead save's file goes, a live one's stays
    assert not stale.exists() and young.exists() and all(p.exists() for p in others)
    os.utime(young, (hour_ago, hour_ago))
    assert client.put(f"/api/clips/{c}/edit", json={"levels": [0.5] * 8}).status_code == 200  # the next save
    assert sorted(p.name for p in edits.iterdir()) == sorted([f"{c}.json"] + [p.name for p in others])


def test_a_delete_of_an_edit_saved_by_someone_else_since_is_refused(client, edit_set):
    """A delete from a page opened before another tab saved removed that tab's edit, though a
    save from it was refused. A delete names the version it removes; another version there is a
    409 in the save's words, and the edit stays. An edit gone already is no conflict."""
    key = edit_set.items[0].key
    url = f"/api/clips/{key}/edit"
    seen = client.put(url, json={"levels": [1.0] * 8}).json()["version"]   # tab A opens the clip here
    assert client.get(f"/api/clips/{key}").json()["version"] == seen
    other = client.put(url, json={"levels": [0.5] * 8, "version": seen}).json()["version"]  # tab B saves
    r = client.delete(url, params={"version": seen})                       # tab A deletes
    assert r.status_code == 409 and r.json()["error"] == (
        f"clip {key} was saved by someone else since it was opened (its edit is now version {other}, not {seen}): "
        "open the clip again to see that edit, then delete")
    assert edit_set.edit(key).levels == [0.5] * 8
    r = client.delete(url, params={"version": "x" * 5000})                 # not echoed whole
    assert r.status_code == 409 and len(r.json()["error"]) < 300 and edit_set.edit(key).levels == [0.5] * 8
    assert client.delete(url, params={"version": other}).json() == {"key": key, "deleted": True}
    assert edit_set.edit(key) is None
    assert client.delete(url, params={"version": other}).json() == {"key": key, "deleted": False}
    client.put(url, json={"levels": [0.0] * 8})
    assert client.delete(url).json() == {"key": key, "deleted": True}    # no version: removes what is saved
    assert client.delete("/api/clips/nope/edit", params={"version": other}).status_code == 404


def test_the_page_deletes_an_edit_only_if_no_one_saved_it_since(page, edit_set):
    """The page's Delete sends the version it read: an edit another tab saved meanwhile stays,
    and the refusal is said as a save's is; then, the clip opened again, Delete removes it."""
    key = edit_set.items[0].key
    edit_set.save_edit(key, [1.0] * 8)
    page.open(key)
    assert page.button("delete").is_enabled() and [page.frame(t).get_attribute("data-level") for t in range(8)] == ["1"] * 8
    edit_set.save_edit(key, [0.5] * 8)                               # another tab, meanwhile
    page.button("delete").click()
    page.wait.until(lambda br: "Delete the saved edit" in br.switch_to.alert.text)
    page.browser.switch_to.alert.accept()
    page.wait.until(lambda br: "saved by someone else" in page.status() and page.status().endswith("then delete"))
    assert "error" in page.find("#status").get_attribute("class") and edit_set.edit(key).levels == [0.5] * 8
    page.browser.refresh()
    page.wait_ready()
    page.open(key)
    page.button("delete").click()
    page.wait.until(lambda br: "Delete the saved edit" in br.switch_to.alert.text)
    page.browser.switch_to.alert.accept()
    page.wait.until(lambda br: page.status().startswith("deleted the edit of"))
    assert edit_set.edit(key) is None and "edited" not in page.clip(key).get_attribute("class")
    assert page.browser.execute_script("return document.querySelectorAll('.frame[data-level]').length") == 0
    assert not page.button("delete").is_enabled() and not page.button("save").is_enabled()


def test_a_delete_with_a_body_is_refused_not_an_unchecked_delete(client, edit_set):
    # {"version": …} in the body, where a save sends it, was ignored: a stale tab's delete removed
    # the edit another tab saved meanwhile
    key = edit_set.items[0].key
    url = f"/api/clips/{key}/edit"
    seen = client.put(url, json={"levels": [1.0] * 8}).json()["version"]
    client.put(url, json={"levels": [0.5] * 8})                              # another tab
    for body in ({"version": seen}, {}, None):
        r = client.request("DELETE", url, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"] == (
            "DELETE takes no request body: send the version of the edit as read as ?version=… "
            "(left out, whatever is saved is removed)"), r.text
    assert edit_set.edit(key).levels == [0.5] * 8


def test_a_body_json_cannot_read_is_said_why(client, edit_set):
    # nested too deeply, not UTF-8, an integer past Python's digits limit: "There was an error
    # parsing the body", which named none of these
    url = f"/api/clips/{edit_set.items[0].key}/edit"
    for content, said in ((b'{"levels": ' + b"[" * 5000 + b"]" * 5000 + b"}", "RecursionError: maximum recursion depth"),
                          (b'{"levels": ["\xff"]}', "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff"),
                          (b'{"levels": [' + b"1" * 5000 + b"]}", "ValueError: Exceeds the limit (4300 digits)")):
        r = client.put(url, content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"].startswith(
            f"the request body cannot be read as JSON ({said}"), r.text
        assert r.json()["error"].endswith(f": PUT {url}")
    assert edit_set.edit(edit_set.items[0].key) is None


def test_an_edit_or_collection_file_json_cannot_read_is_an_error_naming_it(edit_set, model):
    # nested too deeply (RecursionError) was a 500 on opening the clip and a traceback from
    # `stabn finetune`; a collection.json so, or with an integer past 4300 digits, a traceback at start
    key = edit_set.items[0].key
    path = edit_set.directory / "edits" / f"{key}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text('{"id": "x", "levels": ' + "[" * 5000 + "]" * 5000 + "}")
    c = TestClient(create_app(edit_set, model), base_url="http://localhost", raise_server_exceptions=False)
    r = c.get(f"/api/clips/{key}")
    assert r.status_code == 200 and r.json()["edit_error"].startswith(f"cannot read edit {path}: maximum recursion depth")
    with pytest.raises(InputError, match="maximum recursion depth"):
        edit_set.edits()
    collection = edit_set.directory / "collection.json"
    for text, said in (('{"format": 1, "items": ' + "[" * 5000 + "]" * 5000 + "}", "maximum recursion depth"),
                       ('{"format": ' + "1" * 5000 + "}", r"Exceeds the limit \(4300 digits\)")):
        collection.write_text(text)
        with pytest.raises(InputError, match=f"collection.json is not valid JSON: {said}"):
            EditSet.open(edit_set.directory)


def _save_racing(directory, key, levels, start, both, answers) -> None:
    """One editor process's save of ``key`` from the version it read (none), past its check when
    the other's is too (``both``: a barrier) — what two editors racing in two terminals do."""
    from videoxai.stabn import knowledge
    from videoxai.stabn.editor import create_app

    write = knowledge.TemporalEdit.save

    def meet_then_write(self, path):
        try:
            both.wait(timeout=1.0)
        except threading.BrokenBarrierError:  # the other one waits for the lock (or was refused)
            pass
        return write(self, path)

    knowledge.TemporalEdit.save = meet_then_write
    client = TestClient(create_app(directory), base_url="http://localhost")
    start.wait(60)
    r = client.put(f"/api/clips/{key}/edit", json={"levels": levels, "version": None})
    answers.put((r.status_code, r.json(), levels))


def test_two_editor_processes_saving_one_clip_from_one_version_save_once(edit_set):
    """Two `videoxai stabn edit` on one edit set (two terminals): each checked the version a save
    read under a lock of its own process only, so both saves passed and the second overwrote the
    first one's edit without a word. The check and the write hold the edit set's lock file: one
    save succeeds, the other is refused as stale."""
    import multiprocessing
    import queue
    import warnings

    # fork: a spawned child imports torch again (seconds); the child runs no torch op
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    key = edit_set.items[0].key
    start, both, answers = ctx.Barrier(3), ctx.Barrier(2), ctx.Queue()
    editors = [ctx.Process(target=_save_racing, args=(edit_set.directory, key, [level] * 8, start, both, answers))
               for level in (1.0, 0.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12: fork of a process with threads
        for p in editors:
            p.start()
    try:
        start.wait(60)
        got = sorted((answers.get(timeout=60) for _ in editors), key=lambda a: a[0])
    except queue.Empty:
        pytest.fail("an editor process gave no answer")
    finally:
        for p in editors:
            p.join(10)
            if p.is_alive():
                p.kill()
    (ok, saved, levels), (refused, error, _) = got
    assert (ok, refused) == (200, 409), got
    assert error["error"] == (f"clip {key} was saved by someone else since it was opened (its edit is now version "
                              f"{saved['version']}, not none): open the clip again to see that edit, then save")
    assert edit_set.edit(key).levels == levels == saved["levels"]
    assert (edit_set.directory / ".edits.lock").is_file()


def test_a_save_waits_for_a_stuck_editor_only_so_long_and_saves_where_there_are_no_locks(client, edit_set,
                                                                                          monkeypatch, caplog):
    """The edit set's lock across editors: held by a stuck process, a save is refused naming the
    lock file (not a request hung for good); on a file system without locks (ENOSYS), saving
    goes on as before the lock existed, said in the log."""
    import errno
    import fcntl
    import logging

    from videoxai.stabn import file_lock

    key = edit_set.items[0].key
    monkeypatch.setattr(file_lock, "WAIT", 0.05)
    with file_lock.held(edit_set.directory / ".edits.lock", "another editor"):
        r = client.put(f"/api/clips/{key}/edit", json={"levels": [0.0] * 8})
    assert r.status_code == 422 and r.json()["error"] == (
        f"saving an edit in {edit_set.directory} waited 0.05 s for another process that holds "
        f"{edit_set.directory / '.edits.lock'} (a stopped or hung editor?); try again, or end that process")
    assert edit_set.edit(key) is None
    assert client.put(f"/api/clips/{key}/edit", json={"levels": [1.0] * 8}).status_code == 200  # released

    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (_ for _ in ()).throw(OSError(errno.ENOSYS, "no locks")))
    with caplog.at_level(logging.WARNING, logger="videoxai.stabn"):
        r = client.put(f"/api/clips/{key}/edit", json={"levels": [0.5] * 8})
    assert r.status_code == 200 and edit_set.edit(key).levels == [0.5] * 8
    assert "cannot lock" in caplog.text and "no locks" in caplog.text
