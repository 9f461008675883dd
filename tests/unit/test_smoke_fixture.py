def test_health_on_each_backend(client, app_env):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["database"]["dialect"] == (
        "sqlite" if app_env.startswith("sqlite") else "postgresql"
    )
