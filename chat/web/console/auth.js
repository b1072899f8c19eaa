// Staff login (PROTOCOL 2.1) in the browser: the access token lives in this module's memory
// only; the refresh token is an HttpOnly cookie the page never sees (scoped to /api/v1/auth).
// The token is refreshed silently before it expires and on page load, so a reload keeps the
// agent signed in.

const AUTH = "/api/v1/auth";
const RECENT_MS = 5000;
// A mark (no secret) that this browser signed in and has not signed out since: a page load asks
// /refresh only then, so a browser that never signed in makes no request that must fail (401).
const SESSION_MARK = "chat-console.session";

function marked(value) {
  try {
    if (value === undefined) return localStorage.getItem(SESSION_MARK) !== null;
    if (value) localStorage.setItem(SESSION_MARK, "1");
    else localStorage.removeItem(SESSION_MARK);
  } catch {
    // no storage (a privacy mode): every load tries the cookie, as before
  }
  return true;
}

export class AuthError extends Error {
  constructor(status, code, message, retryAfterS = null) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

/** The claims of a JWT (for display and timing only; the server checks the signature). */
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const text = atob(part + "=".repeat((4 - (part.length % 4)) % 4));
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

async function post(path, body, token = null) {
  const headers = {"Content-Type": "application/json"};
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, {
    method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin", cache: "no-store",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    const retry = Number(response.headers.get("Retry-After")) || null;
    throw new AuthError(response.status, error.code || `http_${response.status}`, error.message, retry);
  }
  return data;
}

export class Auth {
  /** onChange(token) after every new token; onLoggedOut(reason) when the session is gone. */
  constructor({onChange = () => {}, onLoggedOut = () => {}} = {}) {
    this.token = null;
    this.user = null;
    this.onChange = onChange;
    this.onLoggedOut = onLoggedOut;
    this._timer = null;
    this._refreshing = null;
    this._renewedAt = 0;
    this._lifeMs = 0;
  }

  get signedIn() {
    return this.token !== null;
  }

  /** Whether a page load should try the cookie: this browser signed in and did not sign out since. */
  get mayHaveSession() {
    return marked();
  }

  /** Sign in with a password; the refresh token comes back as a cookie. */
  async login(userId, password) {
    const data = await post(`${AUTH}/login`, {user_id: userId, password, cookie: true});
    this._accept(data);
    return this.user;
  }

  /** Get a new access token from the cookie; false when there is no valid session. Without
   * `force`, a token renewed a moment ago counts as new. */
  async refresh({force = false} = {}) {
    // One refresh at a time, in this tab and across tabs (the cookie's token is good once).
    if (!this._refreshing) {
      const run = async () => {
        // the timer and the socket both ask near expiry: one rotation is enough
        if (!force && this.token && Date.now() - this._renewedAt < Math.min(RECENT_MS, this._lifeMs / 4)) {
          return true;
        }
        this._accept(await post(`${AUTH}/refresh`, {cookie: true}));
        return true;
      };
      const locked = navigator.locks ? navigator.locks.request("chat-console-refresh", run) : run();
      this._refreshing = locked.catch((error) => {
        if (error instanceof AuthError && (error.status === 401 || error.status === 403 || error.status === 400)) {
          marked(false);
          return false;
        }
        throw error;
      }).finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  /** Sign out: the server revokes the refresh token and clears the cookie. */
  async logout() {
    const token = this.token;
    this._forget();
    try {
      await post(`${AUTH}/logout`, {}, token);
    } catch {
      // already signed out on the server, or it is unreachable: the page forgets the token anyway
    }
  }

  /** The session ended on the server (deactivated, revoked, expired): forget it and say so. */
  expire(reason) {
    if (!this.token) return;
    this._forget();
    this.onLoggedOut(reason);
  }

  /** A REST call with the access token; one silent refresh and retry on a 401. */
  async fetchJSON(path, {method = "GET", body, query} = {}) {
    let url = path;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== undefined && value !== null && value !== "") params.set(key, value);
      }
      const text = params.toString();
      if (text) url += `?${text}`;
    }
    for (let attempt = 0; ; attempt++) {
      if (!this.token) throw new AuthError(401, "unauthenticated", "signed out");
      const headers = {Authorization: `Bearer ${this.token}`};
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await fetch(url, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
      });
      if (response.status === 401 && attempt === 0 && (await this.refresh().catch(() => false))) continue;
      if (response.status === 401) {
        this.expire("unauthenticated");
        throw new AuthError(401, "unauthenticated", "signed out");
      }
      if (response.status === 204) return null;
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        const error = data.error || {};
        throw new AuthError(response.status, error.code || `http_${response.status}`, error.message);
      }
      return data;
    }
  }

  _accept(data) {
    marked(true);
    this.token = data.access_token;
    this._renewedAt = Date.now();
    const c = claims(this.token);
    const user = data.user || {};
    this.user = {id: user.id || c.sub, role: user.role || c.role, name: user.name || c.name || null};
    const lifeS = Number(data.expires_in) || (c.exp ? c.exp - Date.now() / 1000 : 900);
    this._lifeMs = lifeS * 1000;
    this._schedule(lifeS);
    this.onChange(this.token);
  }

  _schedule(expiresInS) {
    clearTimeout(this._timer);
    // refresh a minute early (half-way through for short tokens, so a slow reply still beats
    // the expiry), never in a tight loop
    const aheadS = Math.min(60, expiresInS / 2);
    this._timer = setTimeout(() => this._renew(), Math.max(1, expiresInS - aheadS) * 1000);
  }

  async _renew() {
    try {
      if (!(await this.refresh())) this.expire("expired");
    } catch {
      this._schedule(10);  // the service is unreachable: try again soon, the token may still be good
    }
  }

  _forget() {
    marked(false);
    clearTimeout(this._timer);
    this._renewedAt = 0;
    this.token = null;
    this.user = null;
  }
}
