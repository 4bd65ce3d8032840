"""The console at / in a real headless Chromium (Debian's chromium and chromium-driver, via Selenium).

The page classifies the model card's bullying narrative with the trained demo
model, shows "Advice and Counselling", sends a correction of the sub category,
and the correction is counted in /feedback/stats. /docs renders Swagger UI from
vendored assets. CHS_CONSOLE_SCREENSHOT=docs/console.png saves the README's
screenshot, which shows no path of the machine that took it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

# An absolute path on a server or a build machine, as a page might show one (a model's id, say).
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:tmp|work|home|root|Users|var|srv|opt|mnt)/")

BULLYING = ("A 12-year-old student reports being bullied at school. Classmates are calling names and excluding "
            "from activities. The student feels sad and does not want to go to school anymore.")


@pytest.fixture
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Debian's chromium and chromium-driver are absent: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1100,1150"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.app("demo")
def test_the_console_classifies_and_sends_a_correction(serve_session, demo_app, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url = serve_session.deploy(**demo_app)
    with httpx.Client(base_url=url, timeout=60) as http:
        page = http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        # One static page: nothing fetched from elsewhere.
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)
        docs = http.get("/docs").text
        assert "/docs/swagger-ui-bundle.js" in docs and not re.search(r"""(src|href)=["']?(https?:)?//""", docs)
        assert http.get("/docs/swagger-ui-bundle.js").headers["content-type"].startswith("application/javascript")
        assert http.get("/docs/swagger-ui.css").headers["content-type"].startswith("text/css")
        assert http.get("/docs/secrets.txt").status_code == 404

    wait = WebDriverWait(browser, 120)
    browser.get(url + "/")
    wait.until(lambda d: "models" in d.find_element(By.ID, "model").text or "demo" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "narrative").send_keys(BULLYING)
    browser.find_element(By.ID, "call-id").send_keys("console-call-1")
    browser.find_element(By.ID, "classify").click()
    wait.until(seen.text_to_be_present_in_element((By.ID, "label-main_category"), "Advice and Counselling"))
    assert browser.find_element(By.ID, "routing").text.startswith("queue: advice-and-counselling")
    predicted_sub = browser.find_element(By.ID, "label-sub_category").text
    correction = "Emotional Abuse" if predicted_sub != "Emotional Abuse" else "Bullying"
    Select(browser.find_element(By.ID, "correct-sub_category")).select_by_visible_text(correction)
    Select(browser.find_element(By.ID, "rating")).select_by_visible_text("4")
    browser.find_element(By.ID, "send-feedback").click()
    wait.until(seen.text_to_be_present_in_element((By.ID, "feedback-msg"), "Feedback saved"))
    assert "corrected sub_category" in browser.find_element(By.ID, "feedback-msg").text
    # What the page shows, the header's model id included, names no path of this machine.
    shown = browser.find_element(By.TAG_NAME, "body").text
    here = (str(Path(__file__).resolve().parents[2]), tempfile.gettempdir(), os.path.expanduser("~"))
    assert not MACHINE_PATH.search(shown) and not any(p in shown for p in here if p != "/"), shown
    shot = os.environ.get("CHS_CONSOLE_SCREENSHOT") or str(tmp_path / "console.png")
    assert browser.save_screenshot(shot)

    with httpx.Client(base_url=url, timeout=60) as http:
        stats = http.get("/feedback/stats", params={"days": 1}).json()
        sub = stats["tasks"]["sub_category"]
        assert (stats["feedback"], sub["corrections"], stats["mean_rating"]) == (1, 1, 4.0)
        assert sub["confusions"] == [{"predicted": predicted_sub, "corrected": correction, "count": 1}]
        assert http.get("/cases/console-call-1").json()["case"]["classification"]["main_category"]["label"] == \
            "Advice and Counselling"

    # /docs renders the served OpenAPI document from the vendored Swagger UI.
    browser.get(url + "/docs")
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary-path")))
    paths = {e.text.replace("\u200b", "") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/classify", "/feedback", "/feedback/stats"} <= paths


def test_the_console_asks_for_the_api_key_and_keeps_it_for_the_tab(served_with_keys, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.conftest import API_KEYS

    key, url = API_KEYS[0], served_with_keys
    wait = WebDriverWait(browser, 120)
    browser.get(url + "/")
    wait.until(seen.visibility_of_element_located((By.ID, "key-section")))
    assert "API key needed" in browser.find_element(By.ID, "model").text
    browser.find_element(By.ID, "api-key").send_keys(key)
    browser.find_element(By.ID, "save-key").click()
    wait.until(seen.invisibility_of_element_located((By.ID, "key-section")))
    assert browser.execute_script("return sessionStorage.getItem('helpline-api-key')") == key
    assert browser.execute_script("return localStorage.length") == 0
    browser.find_element(By.ID, "narrative").send_keys("a child is hungry and has no food at home")
    browser.find_element(By.ID, "classify").click()
    wait.until(seen.text_to_be_present_in_element((By.ID, "classify-msg"), "Classified"))
    assert browser.find_element(By.ID, "case-id").text.startswith("case ")
