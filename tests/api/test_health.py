"""GET /health with real checks, on the real servers, embedded, and with a dependency down."""


from chat.app import create_app


async def test_health_ok_on_real_redis_and_mariadb(aiohttp_client, make_settings, mysql_database_url):
    client = await aiohttp_client(create_app(make_settings(database_url=mysql_database_url)))
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "checks": {"redis": "ok", "database": "ok"}}


async def test_health_ok_embedded(aiohttp_client, make_settings):
    client = await aiohttp_client(create_app(make_settings(embedded=True)))
    resp = await client.get("/health")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"


async def test_health_degraded_when_redis_is_down(aiohttp_client, make_settings):
    from chat.settings import parse_redis_url

    settings = make_settings(redis=parse_redis_url("redis://127.0.0.1:1/0"))  # nothing listens on port 1
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/health")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "degraded" and body["checks"]["redis"] == "fail" and body["checks"]["database"] == "ok"


async def test_health_degraded_when_database_is_down(aiohttp_client, make_settings):
    from chat import keys

    app = create_app(make_settings())
    client = await aiohttp_client(app)
    await app[keys.STORE].db.close()  # the database goes away under the running service
    resp = await client.get("/health")
    assert resp.status == 503
    body = await resp.json()
    assert body["checks"] == {"redis": "ok", "database": "fail"}


async def test_metrics_is_prometheus_text(aiohttp_client, make_settings):
    client = await aiohttp_client(create_app(make_settings(embedded=True)))
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE" in await resp.text()


async def test_health_degraded_when_the_ai_key_is_refused(aiohttp_client, make_settings):
    class RefusedKey:
        name = "dashscope"
        health = {"status": "degraded", "code": "InvalidApiKey"}

    client = await aiohttp_client(create_app(make_settings(), ai_provider=RefusedKey()))
    resp = await client.get("/health")
    assert resp.status == 503
    assert await resp.json() == {
        "status": "degraded",
        "checks": {"redis": "ok", "database": "ok", "ai": "InvalidApiKey"},
    }
