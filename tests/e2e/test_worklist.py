"""The worklist page at /worklist in a real headless Chromium, on the demo model, with keys and roles on.

A supervisor's key opens the worklist (the page asks for it); the escalated cases come first, and
the information request the model is sure of is not there;
"Take next" claims the most urgent one and opens its case page; the pasted narrative shows the
evidence highlighted; resolving with a corrected sub category counts in /feedback/stats, and the
case is gone from the open list. A counsellor's key sees no worklist. The app's own store keeps the
counts this test's alone. CHS_WORKLIST_SCREENSHOT=docs/worklist.png saves the README's screenshot.
"""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from tests.e2e.test_console import BULLYING, browser  # noqa: F401  (the fixture)

SUPERVISOR, COUNSELLOR = f"sup-{uuid.uuid4().hex}", f"cou-{uuid.uuid4().hex}"
KEYS = f"sup-desk:supervisor:{SUPERVISOR},counsellor-desk:counsellor:{COUNSELLOR}"
DANGER = ("A 14 year old girl called crying. She says she wants to kill herself because her stepfather beats her "
          "with a panga every night and she is afraid to go home.")
SECOND_DANGER = ("A neighbour reports that a boy of nine is locked in a room by his uncle and has not eaten for "
                 "two days, and the uncle beats him with a rungu when he cries.")
INFO = "Hello, I would like to know the opening hours of the helpline and whether the call is free of charge."


@pytest.mark.app("demo-worklist")
def test_a_supervisor_takes_the_next_case_and_resolves_it_with_a_correction(serve_session, demo_app, browser,
                                                                             tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url = serve_session.deploy(
        model=demo_app["model"], env={"CHS_API_KEYS": KEYS},
        feedback={"database_url": f"sqlite:///{tmp_path / 'worklist.db'}"},
        # An escalation is due in a second here, so the list shows one overdue.
        review={"deadlines": {"escalated_s": 1}})
    auth = {"Authorization": f"Bearer {SUPERVISOR}"}
    with httpx.Client(base_url=url, timeout=120, headers=auth) as http:
        for i, narrative in enumerate((DANGER, BULLYING, INFO, SECOND_DANGER)):
            r = http.post("/classify", json={"narrative": narrative, "call_id": f"worklist-call-{i}"})
            assert r.status_code == 200, r.text
        escalated = {http.get(f"/cases/worklist-call-{i}").json()["case"]["case_id"] for i in (0, 3)}
        assert all(http.get(f"/review/{c}").json()["item"]["escalate"] for c in escalated)
        # The demo model is sure of the information request: it never enters the worklist.
        info_case = http.get("/cases/worklist-call-2").json()["case"]
        assert info_case["routing"]["human_review"] is False
        assert http.get(f"/review/{info_case['case_id']}").status_code == 409
        page = http.get("/worklist")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "//" not in "".join(line for line in page.text.splitlines() if "src=" in line or "href=\"http" in line)

    wait = WebDriverWait(browser, 120)
    browser.get(url + "/worklist")
    wait.until(seen.visibility_of_element_located((By.ID, "key-section")))
    browser.find_element(By.ID, "api-key").send_keys(SUPERVISOR)
    browser.find_element(By.ID, "save-key").click()
    wait.until(seen.text_to_be_present_in_element((By.ID, "who"), "sup-desk (supervisor)"))
    rows = "#worklist tbody tr"
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 3)
    first_two = [r.get_attribute("data-case-id") for r in browser.find_elements(By.CSS_SELECTOR, rows)[:2]]
    assert set(first_two) == escalated
    assert all("urgency-escalated" in r.get_attribute("class") for r in browser.find_elements(By.CSS_SELECTOR, rows)[:2])

    browser.find_element(By.ID, "take-next").click()
    wait.until(seen.visibility_of_element_located((By.ID, "case-section")))
    wait.until(lambda d: "status: claimed by sup-desk" in d.find_element(By.ID, "case-tags").text)
    taken = browser.execute_script("return decodeURIComponent(location.hash.slice('#case='.length))")
    assert taken == first_two[0]
    with httpx.Client(base_url=url, timeout=120, headers=auth) as http:
        record = http.get(f"/cases/{taken}").json()["case"]
    narrative = DANGER if record["call_id"] == "worklist-call-0" else SECOND_DANGER
    browser.find_element(By.ID, "case-narrative").send_keys(narrative)
    marks = [m.text for m in browser.find_elements(By.CSS_SELECTOR, "#evidence mark")]
    lexicon = [s for s in record["routing"]["signals"] if s["source"] == "lexicon"]
    assert lexicon and marks == [narrative[s["start"]:s["end"]] for s in lexicon]

    predicted_sub = record["classification"]["sub_category"]["label"]
    correction = "Emotional Abuse" if predicted_sub != "Emotional Abuse" else "Physical Abuse"
    Select(browser.find_element(By.ID, "correct-sub_category")).select_by_visible_text(correction)
    Select(browser.find_element(By.ID, "rating")).select_by_visible_text("3")
    browser.find_element(By.ID, "resolve").click()
    wait.until(seen.text_to_be_present_in_element((By.ID, "case-msg"), "Resolved"))
    assert "corrected sub_category" in browser.find_element(By.ID, "case-msg").text
    history = browser.find_element(By.ID, "history").text
    assert "sup-desk" in history and f"sub_category → {correction}" in history

    with httpx.Client(base_url=url, timeout=120, headers=auth) as http:
        stats = http.get("/feedback/stats", params={"days": 1}).json()
        sub = stats["tasks"]["sub_category"]
        assert (stats["feedback"], sub["corrections"]) == (1, 1)
        assert sub["confusions"] == [{"predicted": predicted_sub, "corrected": correction, "count": 1}]
        open_ids = {i["case_id"] for i in http.get("/review", params={"status": "open"}).json()["items"]}
        assert taken not in open_ids and len(open_ids) == 2

    browser.find_element(By.ID, "back").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 2)
    listed = [r.get_attribute("data-case-id") for r in browser.find_elements(By.CSS_SELECTOR, rows)]
    assert taken not in listed and listed[0] == first_two[1]
    shot = os.environ.get("CHS_WORKLIST_SCREENSHOT") or str(tmp_path / "worklist.png")
    assert browser.save_screenshot(shot)

    # A counsellor's key: no worklist on the page, and the route answers 403 naming the permission.
    browser.execute_script(f"sessionStorage.setItem('helpline-api-key', '{COUNSELLOR}')")
    browser.get(url + "/worklist")
    wait.until(seen.visibility_of_element_located((By.ID, "denied")))
    assert "counsellor" in browser.find_element(By.ID, "denied-msg").text
    assert not browser.find_element(By.ID, "worklist-section").is_displayed()
    with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {COUNSELLOR}"}) as http:
        denied = http.post("/review/next")
        assert denied.status_code == 403 and "'worklist'" in denied.json()["error"]["message"]
        assert http.get("/whoami").json()["role"] == "counsellor"
