"""The web page at ``baco serve``'s root, in a real browser (Debian's chromium, headless, driven by
selenium through Debian's chromedriver) against a real ``baco serve`` with ``--api-key`` on the tiny
pair: the key dialog, coloured streamed replies, multi-turn, N answers in columns with their
diversity, stop. One server and one browser for the module (and a keyless server for one test).

``BACO_WEB_SCREENSHOT=docs/web-page.png python -m pytest tests/test_web_page.py -k three`` writes
the README's screenshot; every run saves one under pytest's tmp folder (printed with ``-s``).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_process import serving
from test_serve_limits import STORY, read_until_content

from baco_local.metrics.lexical import distinct_n

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(f"the browser tests need Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); "
                "`apt-get install chromium chromium-driver` (.ci/run does it)", allow_module_level=True)

from selenium import webdriver  # noqa: E402  (after the skip: selenium is only needed with a browser)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

KEY = "page-key-42"
MAX_TOKENS_LIMIT = 8000
WAIT = 30  # seconds any one thing may take to show up


@pytest.fixture(scope="module")
def server(tiny_pair, tmp_path_factory):
    base, aligned = tiny_pair
    args = ["--base", str(base), "--aligned", str(aligned), "-c", "8192", "-t", "1", "--parallel", "4",
            "--max-n", "4", "--max-tokens-limit", str(MAX_TOKENS_LIMIT), "--max-tokens", "48", "--api-key", KEY, "-q"]
    with serving(args, tmp_path_factory.mktemp("serve")) as process:
        yield process


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,860", "--force-device-scale-factor=1", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser, server, key: str | None = KEY, loads: bool | None = None) -> None:
    """Load the page fresh, with ``key`` already in the tab's session storage (None: no key); wait
    until it has the server's routers when it ``loads`` (by default: with the right key)."""
    browser.get(server.url + "/")
    browser.execute_script("sessionStorage.clear(); localStorage.clear();"
                           + (f"sessionStorage.setItem('baco-api-key', '{key}');" if key else ""))
    browser.refresh()
    if loads is None:
        loads = key == KEY
    if loads:
        wait_for(browser, lambda: len(Select(by_id(browser, "router")).options) > 0)


def by_id(browser, name: str):
    return browser.find_element(By.ID, name)


def wait_for(browser, condition, timeout: float = WAIT):
    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(lambda _: condition())


def set_value(browser, name: str, value) -> None:
    """Set an input's value as the page reads it (range inputs cannot be typed into)."""
    browser.execute_script("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                           "e.dispatchEvent(new Event('input'));", name, str(value))


def settings(browser, router: str, gamma: float | None, n: int, max_tokens: int, seed: int) -> None:
    Select(by_id(browser, "router")).select_by_value(router)
    if gamma is not None:
        set_value(browser, "gamma", gamma)
    set_value(browser, "samples", n)
    set_value(browser, "max-tokens", max_tokens)
    set_value(browser, "seed", seed)
    set_value(browser, "temperature", 0.8)


def send(browser, text: str) -> None:
    box = by_id(browser, "message")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def wait_done(browser, turns: int) -> list:
    """Wait until the page has ``turns`` finished turns; the answer columns of the last one."""
    wait_for(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, ".turn[data-outcome]")) == turns)
    return browser.find_elements(By.CSS_SELECTOR, ".turn")[-1].find_elements(By.CSS_SELECTOR, ".answer")


def answer_text(column) -> str:
    return column.find_element(By.CSS_SELECTOR, ".text").get_attribute("textContent")


def api_texts(server, messages: list[dict], **fields) -> list[str]:
    """The same request straight to the API (not streamed): the text of each choice."""
    body = {"messages": messages, "temperature": 0.8, **fields}
    reply = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60,
                       headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200, reply.text
    return [choice["message"]["content"] for choice in reply.json()["choices"]]


def test_page_and_files_are_public_the_api_is_not(server) -> None:
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/page.js"' in page.text and "http" not in page.text.split("<body>")[0]
    for name, kind in (("page.js", "javascript"), ("page.css", "text/css")):
        response = httpx.get(f"{server.url}/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    missing = httpx.get(server.url + "/static/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert httpx.get(server.url + "/baco/routers").status_code == 401


def test_the_page_asks_for_the_key_and_shows_a_wrong_one(browser, server) -> None:
    open_page(browser, server, key=None)
    dialog = by_id(browser, "key-dialog")
    wait_for(browser, dialog.is_displayed)
    assert "missing API key" in by_id(browser, "key-error").text
    by_id(browser, "key-input").send_keys("wrong-key" + Keys.ENTER)
    wait_for(browser, lambda: "invalid API key" in by_id(browser, "key-error").text)
    assert dialog.is_displayed()
    by_id(browser, "key-input").send_keys(KEY + Keys.ENTER)
    wait_for(browser, lambda: len(Select(by_id(browser, "router")).options) > 0)
    assert not dialog.is_displayed()
    assert by_id(browser, "model").text == "base+aligned"
    assert browser.execute_script("return sessionStorage.getItem('baco-api-key')") == KEY
    # the key is kept: a reload does not ask again
    browser.refresh()
    wait_for(browser, lambda: len(Select(by_id(browser, "router")).options) > 0)
    assert not by_id(browser, "key-dialog").is_displayed()


def test_a_wrong_stored_key_shows_the_error_on_cancel(browser, server) -> None:
    open_page(browser, server, key="stale")
    wait_for(browser, by_id(browser, "key-dialog").is_displayed)
    by_id(browser, "key-cancel").click()
    error = by_id(browser, "error")
    wait_for(browser, error.is_displayed)
    assert "The server refused the API key (401): invalid API key" in error.text


def test_router_controls_follow_the_server(browser, server) -> None:
    open_page(browser, server)
    names = [option.get_attribute("value") for option in Select(by_id(browser, "router")).options]
    assert names[:3] == ["aligned", "base", "random"] and "p-punc" in names
    assert Select(by_id(browser, "router")).first_selected_option.get_attribute("value") == "p-punc"
    gamma = by_id(browser, "gamma")
    assert (gamma.get_attribute("min"), gamma.get_attribute("max"), gamma.get_attribute("value")) == ("0", "1", "0.3")
    Select(by_id(browser, "router")).select_by_value("h")
    assert gamma.get_attribute("max") == "6.347" and gamma.get_attribute("value") == "3"
    Select(by_id(browser, "router")).select_by_value("aligned")
    assert not gamma.is_enabled() and by_id(browser, "gamma-value").text == "n/a"
    assert by_id(browser, "max-tokens").get_attribute("max") == str(MAX_TOKENS_LIMIT)
    assert by_id(browser, "samples").get_attribute("max") == "4"
    for control in browser.find_elements(By.CSS_SELECTOR, "input, select, textarea"):
        label = browser.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']")
        assert label or control.find_elements(By.XPATH, "ancestor::label"), control.get_attribute("id")


def test_a_reply_streams_in_both_colours_and_the_conversation_goes_on(browser, server) -> None:
    open_page(browser, server)
    settings(browser, "random", 0.5, n=1, max_tokens=40, seed=11)
    send(browser, "Tell me a story")
    [column] = wait_done(browser, 1)
    sides = {span.get_attribute("data-side") for span in column.find_elements(By.CSS_SELECTOR, ".tok")}
    assert sides == {"base", "aligned"}
    colours = {span.value_of_css_property("color") for span in column.find_elements(By.CSS_SELECTOR, ".tok")}
    assert len(colours) == 2  # the two sides look different
    first = answer_text(column)
    history = [{"role": "user", "content": "Tell me a story"}]
    assert [first] == api_texts(server, history, router="random", gamma=0.5, max_tokens=40, seed=11)
    assert "base share: " in column.find_element(By.CSS_SELECTOR, ".share").text
    assert "router random, γ 0.5" in browser.find_element(By.CSS_SELECTOR, ".meta").text
    # Shift+Enter is a new line, Enter sends the two lines; the whole conversation goes to the server
    box = by_id(browser, "message")
    box.send_keys("And then?", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "Tell me more")
    assert box.get_attribute("value") == "And then?\nTell me more"
    box.send_keys(Keys.ENTER)
    [column] = wait_done(browser, 2)
    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "And then?\nTell me more"}]
    assert [answer_text(column)] == api_texts(server, history, router="random", gamma=0.5, max_tokens=40, seed=11)
    # the colour-blind-safe choice changes the colours, and reset empties the conversation
    before = column.find_element(By.CSS_SELECTOR, ".tok.base").value_of_css_property("color")
    by_id(browser, "cvd").click()
    assert column.find_element(By.CSS_SELECTOR, ".tok.base").value_of_css_property("color") != before
    by_id(browser, "reset").click()
    assert browser.find_elements(By.CSS_SELECTOR, ".turn") == []


def test_three_answers_side_by_side_with_shares_and_diversity(browser, server, tmp_path) -> None:
    open_page(browser, server)
    settings(browser, "p-punc", 0.5, n=3, max_tokens=48, seed=5)
    send(browser, "Tell me a story about the cat")
    columns = wait_done(browser, 1)
    assert len(columns) == 3
    tops = {column.location["y"] for column in columns}
    lefts = [column.location["x"] for column in columns]
    assert len(tops) == 1 and lefts == sorted(lefts) and len(set(lefts)) == 3  # side by side
    texts = [answer_text(column) for column in columns]
    assert texts == api_texts(server, [{"role": "user", "content": "Tell me a story about the cat"}],
                              router="p-punc", gamma=0.5, max_tokens=48, seed=5, n=3)
    for column in columns:
        assert column.find_element(By.CSS_SELECTOR, ".share").text.startswith("base share: ")
        assert column.find_elements(By.CSS_SELECTOR, ".tok.base")
    figure = browser.find_element(By.CSS_SELECTOR, ".diversity")
    assert "distinct-2" in figure.text
    assert float(figure.get_attribute("data-value")) == pytest.approx(distinct_n(texts, 2), abs=1e-6)
    assert "kept" in columns[0].get_attribute("class")
    columns[2].find_element(By.CSS_SELECTOR, ".keep").click()
    assert "kept" in columns[2].get_attribute("class") and "kept" not in columns[0].get_attribute("class")
    shot = tmp_path / "web-page.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    if os.environ.get("BACO_WEB_SCREENSHOT"):
        Path(os.environ["BACO_WEB_SCREENSHOT"]).write_bytes(shot.read_bytes())


def test_narrow_window_stacks_the_answers(browser, server, tmp_path) -> None:
    browser.set_window_size(480, 900)
    try:
        open_page(browser, server)
        by_id(browser, "cvd").click()
        settings(browser, "p", 0.5, n=2, max_tokens=24, seed=1)
        send(browser, "Hi")
        columns = wait_done(browser, 1)
        assert columns[0].location["x"] == columns[1].location["x"] < columns[1].location["y"]
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        browser.save_screenshot(str(tmp_path / "web-page-narrow.png"))
    finally:
        browser.set_window_size(1280, 860)


def live_sequences(server) -> int:
    stats = httpx.get(server.url + "/baco/stats", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    return stats.json()["live_sequences"]


@pytest.mark.parametrize("how", ["button", "escape"])
def test_stop_ends_a_long_reply(browser, server, how) -> None:
    open_page(browser, server)
    settings(browser, "p-punc", 0.3, n=1, max_tokens=MAX_TOKENS_LIMIT, seed=3)
    send(browser, "Tell me a long story")
    column = browser.find_element(By.CSS_SELECTOR, ".answer")
    wait_for(browser, lambda: len(answer_text(column)) > 20)
    assert by_id(browser, "stop").is_enabled() and not by_id(browser, "send").is_enabled()
    if how == "button":
        by_id(browser, "stop").click()
    else:
        by_id(browser, "message").send_keys(Keys.ESCAPE)
    wait_done(browser, 1)
    assert browser.find_element(By.CSS_SELECTOR, ".turn").get_attribute("data-outcome") == "stopped"
    assert by_id(browser, "status").text == "stopped" and by_id(browser, "send").is_enabled()
    share = column.find_element(By.CSS_SELECTOR, ".share").text
    assert "stopped" in share and re.search(r"\d+\.\d% of the text so far, by characters", share), share
    text = answer_text(column)
    deadline = time.monotonic() + 10
    while live_sequences(server) and time.monotonic() < deadline:  # the server cancelled it
        time.sleep(0.05)
    assert live_sequences(server) == 0
    assert answer_text(column) == text and len(text) < MAX_TOKENS_LIMIT  # it did not go on


def test_a_refused_request_is_shown_and_the_message_kept(browser, server) -> None:
    open_page(browser, server)
    settings(browser, "p", 0.5, n=1, max_tokens=MAX_TOKENS_LIMIT + 1, seed=1)  # past the input's max
    send(browser, "Too long")
    error = by_id(browser, "error")
    wait_for(browser, error.is_displayed)
    assert error.text.startswith("The server refused the request (400): ") and "max_tokens" in error.text
    assert by_id(browser, "message").get_attribute("value") == "Too long"
    assert browser.find_elements(By.CSS_SELECTOR, ".turn") == [] and by_id(browser, "send").is_enabled()
    set_value(browser, "max-tokens", 4)
    by_id(browser, "send").click()
    wait_done(browser, 1)
    assert not error.is_displayed()


@pytest.fixture(scope="module")
def keyless(tiny_pair, tmp_path_factory):
    """A server without --api-key, with one sequence and a queue of one (a third request gets 503)."""
    base, aligned = tiny_pair
    args = ["--base", str(base), "--aligned", str(aligned), "-c", "8192", "-t", "1", "--parallel", "1",
            "--queue", "1", "--max-tokens-limit", str(MAX_TOKENS_LIMIT), "--max-tokens", "12", "-q"]
    with serving(args, tmp_path_factory.mktemp("keyless")) as process:
        yield process


def test_a_server_without_a_key_never_asks_for_one(browser, keyless) -> None:
    open_page(browser, keyless, key=None, loads=True)  # no key asked for
    assert not by_id(browser, "key-dialog").is_displayed() and not by_id(browser, "error").is_displayed()
    send(browser, "Tell me a story")
    [column] = wait_done(browser, 1)
    assert answer_text(column) and column.find_elements(By.CSS_SELECTOR, ".tok")
    assert not by_id(browser, "key-dialog").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('baco-api-key')") is None


def test_a_busy_server_is_a_readable_503_and_the_message_kept(browser, keyless) -> None:
    open_page(browser, keyless, key=None, loads=True)  # no key asked for
    long = {"messages": STORY, "temperature": 0, "max_tokens": MAX_TOKENS_LIMIT, "stream": True}  # no early end
    waiting = threading.Thread(target=httpx.post, args=(keyless.url + "/v1/chat/completions",),
                               kwargs={"json": {**long, "stream": False, "max_tokens": 4}, "timeout": 60})
    with httpx.stream("POST", keyless.url + "/v1/chat/completions", json=long, timeout=60) as busy:
        lines = busy.iter_lines()  # kept: a dropped iterator closes the connection
        read_until_content(lines)  # the one sequence is taken
        waiting.start()  # and the one place in the queue
        wait_for(browser, lambda: httpx.get(keyless.url + "/baco/stats").json()["waiting"] == 1)
        send(browser, "Tell me a story")
        error = by_id(browser, "error")
        wait_for(browser, error.is_displayed)
    waiting.join(WAIT)
    assert error.text.startswith("The server is busy or still loading; try again in a moment (503): ")
    assert "the queue is full" in error.text
    assert by_id(browser, "message").get_attribute("value") == "Tell me a story"
    assert browser.find_elements(By.CSS_SELECTOR, ".turn") == [] and by_id(browser, "send").is_enabled()
