"""The reports page at /console/reports in a real headless Chromium, with the trained demo model.

Cases are classified over HTTP; the page draws cases per week by main category as inline SVG (one
rect per week and category with a shown count) and a table in which counts under reports.min_count
read "<5". What it draws is held equal to what GET /reports/summary answers for the same weeks.
"""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest

from tests.e2e.test_console import BULLYING, browser  # noqa: F401  (the fixture)

OTHER = "What are the opening hours of the helpline and can I call at night?"


@pytest.mark.app("demo")
def test_the_reports_page_draws_cases_per_week_by_main_category(serve_session, demo_app, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = serve_session.deploy(**demo_app)
    with httpx.Client(base_url=url, timeout=60) as http:
        page = http.get("/console/reports")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # no external asset
        bullying = [http.post("/classify", json={"narrative": BULLYING}).json() for _ in range(6)]
        assert {c["classification"]["sub_category"]["label"] for c in bullying} == {"Bullying"}
        assert http.post("/classify", json={"narrative": OTHER}).status_code == 200

    browser.get(url + "/console/reports")
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "chart").get_attribute("data-loaded") == "true")
    start, end = (browser.find_element(By.ID, name).get_attribute("value") for name in ("from", "to"))
    with httpx.Client(base_url=url, timeout=60) as http:
        report = http.get("/reports/summary", params={"from": start, "to": end, "period": "week",
                                                      "by": "main_category"}).json()
    drawn = {(r.get_attribute("data-week"), r.get_attribute("data-category"), int(r.get_attribute("data-count")))
             for r in browser.find_elements(By.CSS_SELECTOR, "#chart svg rect")}
    expected = {(p["start"], c["group"]["main_category"], c["count"]) for p in report["periods"] for c in p["counts"]
                if isinstance(c["count"], int)}
    # The default range is the 84 days up to today: 12 ISO weeks when today is a Sunday, else parts of 13.
    assert drawn == expected and len(report["periods"]) == (12 if date.fromisoformat(end).weekday() == 6 else 13)
    this_week = report["periods"][-1]["start"]
    assert any(week == this_week and category == "Abuse and Violence" and count >= 6
               for week, category, count in drawn), drawn
    # The table shows every cell, the hidden ones as "<5".
    table = {}
    for row in browser.find_elements(By.CSS_SELECTOR, "#counts tbody tr"):
        for td in row.find_elements(By.CSS_SELECTOR, "td[data-category]"):
            if td.text:
                table[(row.get_attribute("data-week"), td.get_attribute("data-category"))] = td.text
    assert table == {(p["start"], c["group"]["main_category"]): str(c["count"])
                     for p in report["periods"] for c in p["counts"]}
    assert "Child Helpline International" in browser.find_element(By.ID, "taxonomy").text
