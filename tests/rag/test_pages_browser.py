"""The pages in a real headless Chromium (Debian's package, driven by Playwright; no `playwright
install`), against real uvicorn servers on 127.0.0.1. The pages run under their
Content-Security-Policy (no eval), so waits poll with ``page.evaluate``.

The ask test uses a scripted pydantic-ai ``FunctionModel`` that streams its JSON piece by piece:
what is tested is the page (streaming display, citation links), not the model. Screenshots go to
``results/browser/pages`` (git-ignored).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rag_runtime import IndexedDoc, RagIndex, create_app
from rag_runtime.pages import ReviewStore, create_review_app

from .conftest import LiveServer, generated_corpus
from .review_helpers import SCRIPT_CHUNK, artefact_dir, launch_browser, write_run_folder
from .test_service_stream import scripted_model

pytestmark = pytest.mark.browser
KEY = "page-key"
QUESTION = "Why should pastry rest in the fridge?"


def wait_until(page, js: str, timeout_s: float = 30.0):
    """Poll ``js`` in the page until it is truthy (``wait_for_function`` needs eval, which the CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(js)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {js}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = launch_browser(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def search_server() -> Iterator[LiveServer]:
    docs = generated_corpus() + [IndexedDoc(id="script-doc", text=SCRIPT_CHUNK, metadata={"source": "docs/<b>hostile</b>.md"})]
    app = create_app(index=RagIndex.build(docs), api_key=KEY, model=scripted_model(piece_delay_s=0.08))
    with LiveServer(app) as server:
        yield server


def _page(browser, errors: list):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page


def test_search_page_asks_for_the_key_then_shows_hits_and_a_streamed_cited_answer(browser, search_server):
    errors: list = []
    context, page = _page(browser, errors)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{search_server.url}/ui")
    wait_until(page, "!document.getElementById('key-box').classList.contains('hidden')")
    page.fill("#api-key", KEY)
    page.click("#key-form button")

    page.fill("#query", "bread dough kneading")
    page.press("#query", "Enter")
    wait_until(page, "document.querySelectorAll('#hits .hit').length > 0")
    first = page.locator("#hits .hit").first
    assert "Knead the bread dough" in first.text_content()
    assert first.locator(".score").count() >= 2  # the score and its components
    assert "source: docs/cooking.md" in first.text_content()

    page.fill("#query", QUESTION)
    page.click("#ask-btn")
    seen = set()
    deadline = time.monotonic() + 60
    while "Answer (" not in (page.text_content("#answer-label") or ""):
        seen.add(page.text_content("#answer-text"))
        assert time.monotonic() < deadline, "no answer event"
        time.sleep(0.02)
    final = page.text_content("#answer-text")
    assert final == "So the butter stays cold."
    assert any(s and s != final and final.startswith(s) for s in seen), f"no partial text streamed: {seen}"
    assert "supported" in page.text_content("#support")
    link = page.locator("#citations a.cite").first
    target = link.get_attribute("href")
    link.click()
    card = page.locator(target)
    assert "target" in card.get_attribute("class")
    assert card.get_attribute("data-id") == link.get_attribute("data-id")
    assert card.locator("mark").text_content().lower() == "so the butter stays cold"
    page.screenshot(path=str(artefact_dir("pages") / "search-ask.png"), full_page=True)

    page.fill("#query", "What is the capital of Mongolia?")
    page.click("#ask-btn")
    wait_until(page, "document.getElementById('answer-label').textContent === 'Refused'")
    assert "refused" in page.get_attribute("#answer-box", "class")
    assert page.locator("#citations a").count() == 0

    assert all(u.startswith(search_server.url) or u.startswith("data:") for u in requests), "a request left the server"
    assert not any(KEY in u for u in requests)  # the key travels in a header, never in a URL
    assert not errors
    context.close()


def test_markup_in_a_chunk_shows_as_text_on_the_search_page(browser, search_server):
    errors: list = []
    context, page = _page(browser, errors)
    page.goto(f"{search_server.url}/ui")
    page.evaluate(f"sessionStorage.setItem('liquid.apiKey', '{KEY}')")
    page.fill("#query", "beware script only text bold")
    page.press("#query", "Enter")
    wait_until(page, "document.querySelectorAll('#hits .hit').length > 0")
    hit = page.locator("#hits .hit[data-id='script-doc']")
    assert SCRIPT_CHUNK in hit.text_content() and "docs/<b>hostile</b>.md" in hit.text_content()
    assert page.locator("#hits script, #hits b").count() == 0
    assert page.evaluate("window.__pwned === undefined")
    assert not errors
    context.close()


@pytest.fixture()
def review_server(tmp_path) -> Iterator[LiveServer]:
    run = write_run_folder(tmp_path / "run", n_copies=2)
    app = create_review_app(run, tmp_path / "review" / "j.sqlite", api_key=KEY, overlap=1.0)
    with LiveServer(app) as server:
        server.app = app
        yield server


def _start_review(page, url: str, name: str) -> None:
    page.goto(f"{url}/review")
    page.evaluate(f"sessionStorage.setItem('liquid.apiKey', '{KEY}')")
    page.reload()
    wait_until(page, "!document.getElementById('name-form').classList.contains('hidden')")
    page.fill("#reviewer-name", name)
    page.click("#start-btn")
    wait_until(page, "document.body.dataset.qaId")


def _judged(page, n: int) -> None:
    wait_until(page, f"window.__reviewTimings.length >= {n}")


def test_review_by_click_and_keyboard_persists_across_reload_and_undoes(browser, review_server):
    errors: list = []
    context, page = _page(browser, errors)
    _start_review(page, review_server.url, "ann")
    shown = [page.evaluate("document.body.dataset.qaId")]
    page.click("#accept-btn")
    _judged(page, 1)
    shown.append(page.evaluate("document.body.dataset.qaId"))
    page.keyboard.press("1")
    page.keyboard.press("r")
    _judged(page, 2)
    assert "the ETL" in page.text_content("#last")  # the ETL's verdict appears only after judging
    shown.append(page.evaluate("document.body.dataset.qaId"))
    page.keyboard.press("e")
    page.keyboard.type(" (edited)")
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    _judged(page, 3)
    page.keyboard.press("s")
    _judged(page, 4)

    store: ReviewStore = review_server.app.state.store
    mine = {j.qa_id: j for j in store.current() if j.reviewer == "ann"}
    assert [mine[q].verdict for q in shown] == ["accept", "reject", "accept"]
    assert mine[shown[1]].reasons == ["wrong answer"]
    assert mine[shown[2]].edited_answer.endswith(" (edited)")

    page.reload()
    wait_until(page, "document.body.dataset.qaId")
    assert "you: 4 judged" in page.text_content("#progress")
    assert page.evaluate("document.body.dataset.qaId") not in mine
    before_undo = page.evaluate("document.body.dataset.qaId")
    page.keyboard.press("u")
    wait_until(page, f"document.body.dataset.qaId !== '{before_undo}'")
    undone = page.evaluate("document.body.dataset.qaId")
    assert undone == max(mine.values(), key=lambda j: j.id).qa_id
    assert undone not in {j.qa_id for j in store.current() if j.reviewer == "ann"}
    assert [j.verdict for j in store.history("ann", undone)][-1] == "undo"
    page.screenshot(path=str(artefact_dir("pages") / "review.png"), full_page=True)
    assert not errors
    context.close()


def test_two_reviewers_at_once_lose_no_write(browser, review_server):
    errors: list = []
    (ctx_a, a), (ctx_b, b) = _page(browser, errors), _page(browser, errors)
    _start_review(a, review_server.url, "ann")
    _start_review(b, review_server.url, "bob")
    n = 10
    for i in range(1, n + 1):
        a.keyboard.press("a")  # both requests in flight together: each page waits only after both presses
        b.keyboard.press("r")
        _judged(a, i)
        _judged(b, i)
    store: ReviewStore = review_server.app.state.store
    history = store.history()
    assert sum(j.reviewer == "ann" for j in history) == n and sum(j.reviewer == "bob" for j in history) == n
    current = store.current()
    assert len({j.qa_id for j in current if j.reviewer == "ann"}) == n
    assert len({j.qa_id for j in current if j.reviewer == "bob"}) == n
    assert {j.verdict for j in current if j.reviewer == "ann"} == {"accept"}
    # overlap 1.0: every pair goes to both, so they judged the same pairs in the same order
    assert {j.qa_id for j in current if j.reviewer == "ann"} == {j.qa_id for j in current if j.reviewer == "bob"}
    assert not errors
    ctx_a.close()
    ctx_b.close()


def test_review_page_shows_markup_as_text_and_refuses_writes_without_the_key(browser, review_server):
    errors: list = []
    context, page = _page(browser, errors)
    page.goto(f"{review_server.url}/review")
    wait_until(page, "!document.getElementById('key-box').classList.contains('hidden')")  # info got a 401
    status = page.evaluate("""fetch('/api/review/judgments', {method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({reviewer: 'mallory', qa_id: document.body.dataset.qaId || 'x', verdict: 'accept'})}).then(r => r.status)""")
    assert status == 401
    assert not [j for j in review_server.app.state.store.history() if j.reviewer == "mallory"]

    page.fill("#api-key", KEY)
    page.click("#key-form button")
    wait_until(page, "!document.getElementById('name-form').classList.contains('hidden')")
    page.fill("#reviewer-name", "carl")
    page.click("#start-btn")
    wait_until(page, "document.body.dataset.qaId")
    for i in range(1, 17):
        if "<script>" in page.text_content("#chunk"):
            break
        page.keyboard.press("s")
        _judged(page, i)
    assert SCRIPT_CHUNK in page.text_content("#chunk")
    assert page.locator("#chunk script, #chunk b, #answer script, #answer b").count() == 0
    assert page.evaluate("window.__pwned === undefined")
    assert not errors
    context.close()


def test_the_api_docs_page_renders_offline(browser, search_server):
    errors: list = []
    context, page = _page(browser, errors)
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(search_server.url) else None)
    page.goto(f"{search_server.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Liquid RAG runtime" in page.text_content(".swagger-ui .info .title")
    assert page.locator(".opblock-summary-path", has_text="/search").count() >= 1
    assert not [u for u in outside if not u.startswith("data:")]
    context.close()
