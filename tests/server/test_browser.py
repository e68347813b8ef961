"""The web page in a real headless Chromium (the system's ``chromium``, driven by Playwright): the answer
streams in token by token, then the citations appear; chat keeps the history; search-only; errors shown."""
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

import pytest

from ragtune.config import ServerConfig
from ragtune.server import create_app
from tests.server.fakes import FakeRAG, make_index
from tests.server.live import live_server

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
if CHROMIUM is None:
    pytest.skip("no Chromium on this machine (apt-get install -y chromium); `make test` installs it when run as root", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package; it drives the system Chromium)")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def test_answer_streams_then_citations(tmp_path, page):
    fake = FakeRAG(delay=0.25)  # six words over ~1.5 s
    with live_server(create_app(make_index(tmp_path), rag_factory=lambda kind, gen: fake)) as url:
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('info').textContent.includes('2 passages')")
        page.fill("#q", "When?")
        page.click("#ask")
        answer = page.locator(".answer")
        # tokens arrive before the answer completes: a partial answer while the state is still "streaming"
        page.wait_for_function("""() => { const a = document.querySelector('.answer');
            return a && a.dataset.state === 'streaming' && a.textContent.startsWith('the answer') && !a.textContent.includes('1889'); }""",
                               timeout=10000)
        assert page.locator(".cite").count() == 0  # the citations come after the answer
        page.wait_for_function("document.querySelector('.answer').dataset.state === 'done'", timeout=15000)
        assert answer.text_content() == "the answer to When? is 1889"
        cites = page.locator(".cite")
        assert cites.count() == 2 and "posterior 0.900" in cites.first.text_content() and "prior 0.750" in cites.first.text_content()
        # chat mode keeps the history and sends it with the next question
        page.check("#chat")
        page.fill("#q", "And the tea?")
        page.click("#ask")
        page.wait_for_function("document.querySelectorAll('.answer[data-state=done]').length === 2", timeout=15000)
        page.fill("#q", "Where?")
        page.click("#ask")
        page.wait_for_function("document.querySelectorAll('.answer[data-state=done]').length === 3", timeout=15000)
        assert fake.calls[-1][:2] == ("Where?", (("And the tea?", "the answer to And the tea? is 1889"),))
        # search only
        page.select_option("#mode", "search")
        page.fill("#q", "green tea")
        page.click("#ask")
        page.wait_for_selector("text=score", timeout=10000)
        assert "Camellia" in page.locator("#out").text_content()
    assert page.errors == []  # no console errors (the favicon included)


def test_errors_are_shown(tmp_path, page):
    idx = make_index(tmp_path)
    app = create_app(idx, rag_factory=lambda kind, gen: FakeRAG(delay=0.5), api_key="k1", config=ServerConfig(timeout_s=0.6))
    with live_server(app) as url:
        page.goto(url + "/")
        page.wait_for_selector("#info .err")
        assert "API key" in page.locator("#info").text_content()
        page.fill("#q", "When?")
        page.click("#ask")
        page.wait_for_selector("#out .err")
        assert "needs an API key" in page.locator("#out").text_content()
        page.fill("#key", "k1")
        page.dispatch_event("#key", "change")
        page.wait_for_function("document.getElementById('info').textContent.includes('passages')")
        page.fill("#q", "When?")
        page.click("#ask")
        page.wait_for_selector("#out .err", timeout=10000)
        assert "took too long (timed out)" in page.locator("#out").text_content()


def test_a_full_queue_is_shown(tmp_path, page):
    """Another client holds the only place in the queue (for about six seconds), so the page's question gets 429."""
    app = create_app(make_index(tmp_path), rag_factory=lambda kind, gen: FakeRAG(delay=1.0), config=ServerConfig(queue_size=1))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('info').textContent.includes('passages')")
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(http.post, "/api/ask", json={"question": "hold"})
            deadline = time.monotonic() + 10
            while "ragtune_queue_depth 1.0" not in http.get("/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            page.fill("#q", "When?")
            page.click("#ask")
            page.wait_for_selector("text=server is busy", timeout=10000)
            assert busy.result().status_code == 200
