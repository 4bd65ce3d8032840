def test_health_is_ok_when_served(http):
    r = http.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "healthy"
