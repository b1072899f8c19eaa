"""The shared protocol client (chat/web/shared/client.js) on its own, in chromium: a page of the service's
origin imports /web/client.js with a scripted stand-in for WebSocket, so a test decides what the "server"
answers and how each socket closes, and looks at what the client asked `getToken` for."""

from __future__ import annotations

from playwright.async_api import Page, Route

from tests.browser.conftest import Service

BLANK = "<!doctype html><meta charset=utf-8><title>client.js</title>"

# FakeSocket: opens on the next tick; `reply(frame)` delivers a frame, `serverClose(code)` closes from the
# server's side; close(code) from the client closes with that code, or with `serverCode` when the server's
# close frame came first (as a browser reports it). `until(cond)` polls, failing after 5 s.
HARNESS = """async () => {
  const sockets = [];
  class FakeSocket {
    static OPEN = 1;
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
      setTimeout(() => { this.readyState = 1; if (this.onopen) this.onopen(); });
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close(code = 1000) { this.serverClose(this.serverCode || code); }
    reply(frame) { this.onmessage({data: JSON.stringify(frame)}); }
    serverClose(code) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose({code, reason: ""}));
    }
  }
  window.WebSocket = FakeSocket;
  const until = async (cond, what) => {
    const deadline = Date.now() + 5000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  const {ChatClient} = await import("/web/client.js");
  const asked = [];
  let failNext = false;
  const client = new ChatClient({
    server: location.origin,
    getToken: (how) => {
      asked.push({...how});
      if (failNext) {
        failNext = false;
        throw new Error("the refresh failed (offline)");
      }
      return `token-${asked.length}`;
    },
    backoffBaseMs: 1,
    backoffMaxMs: 2,
  });
  const exp = Math.floor(Date.now() / 1000) + 900;
  // the n-th socket's auth frame, answered with a result (accepted) or an error
  const auth = async (n, accept, serverCode = 0) => {
    await until(() => sockets.length >= n && sockets[n - 1].sent.length >= 1, `socket ${n}'s auth frame`);
    const ws = sockets[n - 1];
    ws.serverCode = serverCode;
    const frame = ws.sent[0];
    if (accept) ws.reply({type: "result", id: frame.id, data: {user_id: "ann", role: "agent", exp}});
    else ws.reply({type: "error", id: frame.id, code: "unauthenticated", message: "role changed"});
    return ws;
  };

  client.start();
  await auth(1, true);
  await client.whenOnline();
  failNext = true;
  sockets[0].serverClose(4401);  // its token refused: expired, or the account's role changed
  await auth(2, true);  // after one failed getToken: it was still told
  await client.whenOnline();
  sockets[1].serverClose(1001);  // a service restart: nothing wrong with the token
  await auth(3, false, 4401);  // refused at auth: the error frame, then the server's 4401
  await auth(4, false);  // refused at auth, the close being the client's own (4000)
  await auth(5, true);
  await client.whenOnline();
  client.stop();
  return {asked, tokens: sockets.map((ws) => ws.sent[0].token)};
}"""


async def test_a_refused_token_makes_the_next_get_token_say_so(service: Service, page: Page,
                                                               page_errors: list[str]) -> None:
    async def blank(route: Route) -> None:
        await route.fulfill(content_type="text/html", body=BLANK)

    await page.route(service.url + "/client-test", blank)
    await page.goto(service.url + "/client-test")

    seen = await page.evaluate(HARNESS)

    assert seen["asked"] == [
        {"refresh": False, "refused": False},  # the first connection
        {"refresh": True, "refused": True},  # after a 4401 close: never the same token again (it fails)
        {"refresh": True, "refused": True},  # ...and the next attempt is told again
        {"refresh": True, "refused": False},  # after a restart (1001): the token may be reused
        {"refresh": True, "refused": True},  # after `unauthenticated` and 4401
        {"refresh": True, "refused": True},  # after `unauthenticated` alone
    ]
    assert seen["tokens"] == ["token-1", "token-3", "token-4", "token-5", "token-6"]
    assert page_errors == []
