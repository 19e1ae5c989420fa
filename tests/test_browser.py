"""People answering a round: the annotation page in a real headless Chromium (Selenium with
Debian's chromium-driver). Folder data sets through the drivers are tests/test_drivers.py."""

import contextlib
import json
import os
import re
import shutil
import threading
import time
import urllib.request
from pathlib import Path

from helpers import colour_mask, human_job

ROOT = Path(__file__).parents[1]


def _serve_in_thread(exp, **kw):
    """serve_round in a thread; returns (url, thread, result dict)."""
    from deeplab.annotate import server

    ready, result = threading.Event(), {}
    box = {}

    def run():
        try:
            result["summary"] = server.serve_round(exp, 0, port=0, linger_secs=0.2,
                                                ready=lambda u: (box.update(url=u), ready.set()), **kw)
        except BaseException as e:  # reported by the test
            result["error"] = e
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(60), "the page did not start"
    assert "error" not in result, result.get("error")
    return box["url"], thread, result


def _post(url, path, body):
    """POSTs JSON to the page's API as its script does; returns the decoded reply."""
    req = urllib.request.Request(url + path, method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _click_when_enabled(b, index):
    """Clicks class button `index` once the page has enabled its buttons (a click while the
    next region loads is ignored by the page, as a person's would be)."""
    from selenium.webdriver.common.by import By

    _wait(lambda: b.execute_script(
        "const x = document.querySelectorAll('#classes button'); return x.length > 0 && !x[0].disabled;"),
        what="the class buttons")
    b.find_elements(By.CSS_SELECTOR, "#classes button")[index].click()


def _wait(cond, timeout=20, what="the page"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_answer_by_click_and_key_undo_reload(browser, tmp_path, synth_root):
    from selenium.webdriver.common.by import By

    exp = human_job(tmp_path, synth_root, clicks=6)
    url, thread, result = _serve_in_thread(exp)
    queries = json.loads((exp.round_dir(0) / "selection.json").read_text())["regions"]
    b = browser
    b.get(url)

    def shown():  # the region on screen: (image, region) parsed from the caption
        m = re.search(r"Whole image: (\S+) \(region (\d+),", b.find_element(By.ID, "where").text)
        return m and (m.group(1), int(m.group(2)))

    def answered():
        return [(r["image"], r["region"], r["answer"]) for r in exp.ledger.read()]

    def progress():
        return b.find_element(By.ID, "progress-text").text

    def loaded():  # both views decoded, buttons enabled
        return b.execute_script(
            "const z = document.getElementById('zoom'), w = document.getElementById('whole');"
            "return z.complete && z.naturalWidth > 0 && w.complete && w.naturalWidth > 0 &&"
            " !document.querySelector('#classes button').disabled;")

    _wait(lambda: shown() and loaded())
    assert "answered 0 of 6" in progress() and "clicks 0 of 6" in progress()
    undo = b.find_element(By.ID, "undo")
    assert not undo.is_enabled()  # nothing to undo yet
    buttons = b.find_elements(By.CSS_SELECTOR, "#classes button")
    assert [x.find_element(By.CLASS_NAME, "name").text for x in buttons][:3] == ["road", "sidewalk", "building"]
    first = shown()
    assert first == (queries[0]["image"], queries[0]["region"])
    shots = os.environ.get("ANNOTATE_SCREENSHOT")
    b.save_screenshot(str(tmp_path / "page.png"))
    if shots:  # the README's picture: `ANNOTATE_SCREENSHOT=docs/annotate_page.png pytest -k click`
        shutil.copy(tmp_path / "page.png", shots)
    # what the screenshot shows: the region's yellow outline (both views), the whole image's cyan
    # box, and the class buttons' swatches in the data set's colours (road's purple)
    page = tmp_path / "page.png"
    assert colour_mask(page, (255, 230, 0), tol=30).sum() > 100
    assert colour_mask(page, (0, 255, 255), tol=30).sum() > 100
    assert colour_mask(page, (128, 64, 128), tol=12).sum() > 50

    # the image counter: this region's place among its image's queries
    where = b.find_element(By.ID, "where").text
    count = sum(q["image"] == first[0] for q in queries)
    assert f"region 1 of {count} in this image" in where
    # 1. by click: "building" (train id 2), after looking for a while
    time.sleep(0.4)
    buttons[2].click()
    _wait(lambda: len(answered()) == 1 and shown() != first and loaded())
    assert answered() == [(*first, 2)]
    second = shown()
    # the saved answer stays in view with the next region, and undo is open
    last = b.find_element(By.ID, "last").text
    assert last == f"saved: region {first[1]} of {first[0]} = building", last
    assert undo.is_enabled()
    # 2. by keyboard: "2" is sidewalk (train id 1), "x" is unclear (255)
    body = b.find_element(By.TAG_NAME, "body")
    body.send_keys("2")
    _wait(lambda: len(answered()) == 2 and shown() != second and loaded())
    third = shown()
    body.send_keys("x")
    _wait(lambda: len(answered()) == 3 and loaded())
    assert answered() == [(*first, 2), (*second, 1), (*third, 255)]
    assert "answered 3 of 6" in progress()
    # 3. undo ("z") takes the unclear answer back and asks that region again
    body.send_keys("z")
    _wait(lambda: len(answered()) == 2 and shown() == third and loaded())
    assert b.find_element(By.ID, "last").text == "undone: that region is asked again"
    raw = exp.ledger.raw()
    assert raw[-1]["undo"] is True and (raw[-1]["image"], raw[-1]["region"]) == third
    # 4. reload in the middle: the page continues with the next unanswered region
    b.refresh()
    _wait(lambda: shown() and loaded())
    assert shown() == third and "answered 2 of 6" in progress()
    # 5. answer the rest by clicking; the stage completes and serve_round returns
    while True:
        n = len(answered())
        if n == 6:
            break
        region = shown()
        b.find_elements(By.CSS_SELECTOR, "#classes button")[n % 4].click()
        _wait(lambda: len(answered()) == n + 1 and (n + 1 == 6 or (shown() != region and loaded())))
    _wait(lambda: b.find_element(By.ID, "done").is_displayed())
    assert "Round 0 is complete: 6 regions answered" in b.find_element(By.ID, "done").text
    thread.join(30)
    summary = {k: v for k, v in result["summary"].items() if k != "rows_sha256"}
    assert summary == {"answers": 6, "clicks": 6, "labelled_answers": 6}
    assert len(result["summary"]["rows_sha256"]) == 6
    rows = exp.ledger.read()
    assert [(r["image"], r["region"]) for r in rows][:2] == [first, second]
    assert sorted((r["image"], r["region"]) for r in rows) == sorted((q["image"], q["region"]) for q in queries)
    assert all(r["source"] == "web" and r["annotator"].startswith("a-") for r in rows)
    # every answer's time, measured in the browser: positive and plausible
    assert all(0 < r["elapsed_ms"] < 120_000 for r in rows), [r.get("elapsed_ms") for r in rows]
    assert rows[0]["elapsed_ms"] >= 350  # the pause before the first click
    assert all(r["received_at"] > 1.6e9 for r in rows)


def test_two_people_never_get_the_same_region(browser, tmp_path, synth_root):
    """Two browsers (two annotator ids) on one round: each sees its own region, and the
    answers of both end up once each."""
    from selenium.webdriver.common.by import By

    exp = human_job(tmp_path, synth_root, clicks=4)
    url, thread, result = _serve_in_thread(exp)
    b = browser
    b.get(url + "?annotator=person-one")
    _wait(lambda: "region" in b.find_element(By.ID, "where").text)
    mine = re.search(r"Whole image: (\S+) \(region (\d+),", b.find_element(By.ID, "where").text).groups()
    # the second person, through the API as their page does
    other = _post(url, "api/next", {"client": "person-two"})["query"]
    assert (other["image"], str(other["region"])) != mine
    req = urllib.request.Request(url + "api/answer", method="POST",
                                 data=json.dumps({"client": "person-two", "index": other["index"],
                                                  "answer": 0}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10):
        pass
    while len(exp.ledger.read()) < 4:
        n = len(exp.ledger.read())
        _click_when_enabled(b, 1)
        _wait(lambda: len(exp.ledger.read()) == n + 1)
    thread.join(30)
    rows = exp.ledger.read()
    assert len({(r["image"], r["region"]) for r in rows}) == 4
    assert sorted(r["annotator"] for r in rows) == ["person-one"] * 3 + ["person-two"]


# ---------------------------------------------------------------------------- other sites
def _other_origin(html):
    """A second origin (127.0.0.2, another site than the page's 127.0.0.1) serving `html`."""
    import http.server

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.2:{server.server_address[1]}/"


def test_another_site_can_neither_frame_the_page_nor_lease_its_regions(browser, tmp_path, synth_root):
    """A page on another origin frames the annotation page and points 45 <img> at the API that
    used to hand out regions by GET: the frame stays empty, nothing is leased or answered."""
    from selenium.webdriver.common.by import By

    exp = human_job(tmp_path, synth_root, clicks=4)
    url, thread, result = _serve_in_thread(exp)
    imgs = "".join(f'<img src="{url}api/next?client=x{i}">' for i in range(45))
    attack = (f'<html><body><iframe id="f" name="f" src="{url}" width="900" height="600"></iframe>'
              f'{imgs}<script>fetch("{url}api/next", {{method: "POST", mode: "no-cors", '
              f'headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{client: "fx"}})}});'
              f'</script></body></html>')
    other, other_url = _other_origin(attack)
    b = browser
    try:
        b.get(other_url)
        _wait(lambda: b.execute_script("return document.readyState") == "complete", what="the other site")
        time.sleep(1.0)
        b.switch_to.frame("f")
        assert b.find_elements(By.ID, "classes") == [], "the page rendered inside another site's frame"
        for el in b.find_elements(By.TAG_NAME, "button")[:3]:
            with contextlib.suppress(Exception):
                el.click()
        b.switch_to.default_content()
        # The real annotator still gets the first region; nobody else holds one.
        p = _post(url, "api/next", {"client": "real-person"})
        assert p["query"] is not None and p["query"]["index"] == 0 and p["held_by_others"] == 0
        assert exp.ledger.read() == []
        _post(url, "api/answer", {"client": "real-person", "index": 0, "answer": 1})
    finally:
        b.switch_to.default_content()
        other.shutdown()
        other.server_close()
    b.get(url)  # opened itself, the page works: its own script runs under its policy
    _wait(lambda: "region" in b.find_element(By.ID, "where").text)
    while not result and len(exp.ledger.read()) < 4:
        n = len(exp.ledger.read())
        _click_when_enabled(b, 0)
        _wait(lambda: len(exp.ledger.read()) == n + 1 or result)
    thread.join(30)
    assert "summary" in result


def test_class_names_show_as_text(browser, tmp_path, synth_root):
    from selenium.webdriver.common.by import By

    names = ["<!--<script>", "</script><b id=injected>x</b>"]
    exp = human_job(tmp_path, synth_root, clicks=1, class_names=names)
    url, thread, result = _serve_in_thread(exp)
    b = browser
    b.get(url)
    _wait(lambda: "region" in b.find_element(By.ID, "where").text)
    shown = [x.text for x in b.find_elements(By.CSS_SELECTOR, "#classes button .name")]
    assert shown[:2] == names and b.find_elements(By.ID, "injected") == []
    _click_when_enabled(b, 0)
    thread.join(30)
    assert exp.ledger.read()[0]["answer"] == 0


def test_review_pass_goes_to_another_browser_session(browser, tmp_path, synth_root):
    """REVIEW_SHARE=0.5: the browser answers the round, then waits (it may not review its own
    answers); a second session (its own cookie) reviews; the stage reports the agreement."""
    import http.cookiejar

    from selenium.webdriver.common.by import By

    exp = human_job(tmp_path, synth_root, clicks=4, review_share=0.5)
    url, thread, result = _serve_in_thread(exp)
    b = browser
    b.delete_all_cookies()
    b.get(url)
    _wait(lambda: "region" in b.find_element(By.ID, "where").text)
    while len(exp.ledger.read()) < 4:
        n = len(exp.ledger.read())
        _click_when_enabled(b, 0)
        _wait(lambda: len(exp.ledger.read()) == n + 1)
    _wait(lambda: "wait for another annotator's review" in b.find_element(By.ID, "status").text,
          what="the waiting message")
    assert exp.ledger.reviews(0) == {}
    jar = http.cookiejar.CookieJar()
    other = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    other.open(url, timeout=10).read()  # the page issues this session its cookie
    assert len(jar) == 1

    def post(path, body):
        req = urllib.request.Request(url + path, method="POST", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with other.open(req, timeout=10) as r:
            return json.loads(r.read())

    reviewed = 0
    while (q := post("api/next", {"client": "reviewer"})["query"]) is not None:
        assert q["review"] == 1
        post("api/answer", {"client": "reviewer", "index": q["index"], "answer": 0 if reviewed == 0 else 5,
                            "elapsed_ms": 1200})
        reviewed += 1
    # the first browser, waiting for the review, ends on the round's end, not a network error
    _wait(lambda: b.find_element(By.ID, "done").is_displayed(), what="the waiting page's end")
    assert "Round 0 is complete" in b.find_element(By.ID, "done").text
    assert "server has stopped" not in b.find_element(By.ID, "status").text
    assert not b.find_element(By.ID, "undo").is_enabled()
    thread.join(30)
    assert reviewed == 2 and "summary" in result
    rv = result["summary"]["review"]
    assert rv["reviewed"] == 2 and rv["agreement"] == 0.5 and rv["unclear_after_review"] == 1
    sessions = {r["session"] for r in exp.ledger.read()}
    review_sessions = {rv[1]["session"] for rv in exp.ledger.reviews(0).values()}
    assert len(sessions) == 1 and len(review_sessions) == 1 and not sessions & review_sessions
