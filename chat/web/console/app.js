// The agent console's entry point: sign-in, then the workspace (header with presence, the
// queue and lists, the conversation, its side panel; statistics and search for admins),
// driven by one shared protocol client (/web/client.js) over one WebSocket.

import {ChatClient} from "/web/client.js";
import {translator} from "/web/i18n.js";
import {Auth, claims} from "./auth.js";
import {ConversationView} from "./conversation.js";
import {h, replace} from "./dom.js";
import {loginView} from "./login.js";
import {askPermission, beep, canAsk, desktop, unlockAudio} from "./notify.js";
import {SidePanel} from "./panel.js";
import {SearchView} from "./search.js";
import {Sidebar} from "./sidebar.js";
import {State, customerName} from "./state.js";
import {StatsView} from "./stats.js";
import {STRINGS} from "./strings.js";
import {Sync} from "./sync.js";

const t = translator(STRINGS);
const root = document.getElementById("app");
// sessionStorage, per user: a reload keeps the chosen status; signing out forgets it, and the next
// person to sign in on the tab starts from what the service holds for them
const PRESENCE_KEY = "chat-console.presence";
const presenceKey = (userId) => `${PRESENCE_KEY}:${userId}`;
const QUEUE_REFRESH_MS = 15000;
const QUEUE_REFRESH_AWAY_MS = 5000;
const LISTS_REFRESH_MS = 15000;

document.documentElement.lang = t.language === "zh" ? "zh-CN" : "en";
document.title = t("app.title");
document.addEventListener("pointerdown", unlockAudio, {capture: true});
document.addEventListener("keydown", unlockAudio, {capture: true});

let session = null;  // the running workspace, or null on the sign-in page
let reusedToken = false;  // the last reconnect reused the token instead of refreshing it
let socketToken = null;  // the token last given to the WebSocket

const auth = new Auth({
  onLoggedOut: (reason) => signedOut(reason),
});

/** The words for a failed command or request (also shown in a toast). */
function describe(error) {
  if (!error) return "";
  const code = error.code || "";
  const known = `error.${code}`;
  return known in STRINGS.en ? t(known) : t("error.generic", {message: error.message || code});
}

function makeToaster(host) {
  const show = (text) => {
    const el = h("div", {class: "toast", role: "status", testid: "toast", text});
    host.append(el);
    setTimeout(() => el.remove(), 6000);
    return text;
  };
  const toast = (error) => {
    if (error && (error.code === "offline" || error.code === "unauthenticated") && !auth.signedIn) return "";
    if (error && !error.code) console.warn("console:", error);
    return show(describe(error));
  };
  toast.describe = describe;
  toast.notice = show;  // a piece of news rather than an error
  return toast;
}

function showLogin(notice = "") {
  document.body.className = "signed-out";
  replace(root, loginView({t, auth, notice, onSignedIn: () => startSession()}));
  root.querySelector("[data-testid=login-user]").focus();
}

function signedOut(reason) {
  if (session) session.stop();
  session = null;
  showLogin(reason === "logout" ? "" : t("login.expired"));
}

/** The WebSocket's token. Before `exp` the client asks for a fresher one on the open socket: give
 * it the page's newer token, or renew (the client keeps its own until it expires). After a socket
 * whose token was refused (4401: expired, or its account given another role), never that token
 * again: the page's newer one (a REST call may have renewed it already), or renew at once. For
 * any other reconnect, renew only past half the token's life, so a restart of the service does
 * not rotate the cookie for nothing; a second reconnect in a row always renews. */
async function getToken({refresh, refused = false}) {
  const beforeExpiry = session !== null && session.client.status === "online";
  if (refresh && beforeExpiry) {
    if (auth.token === socketToken) await renew({force: true});
  } else if (refused) {
    reusedToken = false;
    if (auth.token === socketToken) await renew({force: true});
  } else if (refresh) {
    const c = claims(auth.token || "");
    const leftS = (c.exp || 0) - Date.now() / 1000;
    const lifeS = c.exp && c.iat ? c.exp - c.iat : 0;
    if (reusedToken || leftS < lifeS / 2) {
      reusedToken = false;
      await renew();
    } else reusedToken = true;
  } else reusedToken = false;
  if (!auth.token) throw new Error("signed out");
  socketToken = auth.token;
  return auth.token;
}

async function renew(options) {
  if (!(await auth.refresh(options))) {
    auth.expire("expired");
    throw new Error("signed out");
  }
}

class Workspace {
  constructor(user) {
    const state = this.state = new State();
    state.me = user;
    sessionStorage.removeItem(PRESENCE_KEY);  // an earlier version's choice, kept for whoever signed in next
    const stored = sessionStorage.getItem(presenceKey(user.id));
    if (stored === "online" || stored === "away") {
      state.presence = stored;
      state.presenceChosen = true;
    }
    this.toasts = h("div", {class: "toasts", "aria-live": "polite"});
    const toast = this.toast = makeToaster(this.toasts);
    this.client = new ChatClient({
      server: location.origin,
      getToken,
      onStatus: (status) => { state.status = status; this.renderBanner(); },
      onReady: () => this.ready(),
      onFatal: () => auth.expire("deactivated"),
    });
    const live = {
      request: (type, fields) => this.client.request(type, fields),
      notify: (type, fields) => this.client.notify(type, fields),
      send: (frame) => this.client.sendMessage(frame).then((message) => ({message})),
    };
    this.sync = new Sync({state, live, auth, onError: toast, onAssigned: (c) => this.assigned(c)});
    const open = (id) => this.open(id);
    this.sidebar = new Sidebar({state, t, onOpen: open, previewFor: (c) => this.preview(c),
      waitFor: (c) => this.sync.handoffTime(c)});
    this.view = new ConversationView({state, t, live, auth, sync: this.sync, toast});
    this.panel = new SidePanel({state, t, auth, onOpen: open, toast});
    this.stats = new StatsView({state, t, auth, toast});
    this.search = new SearchView({state, t, auth, onOpen: open, toast});
    this.client.on("*", (data, type) => this.sync.handle(type, data));
    state.addEventListener("change", (e) => this.changed(e.detail));
    this.build(user);
    this.page = "inbox";
    this.showPage("inbox");
    this.client.start();
    if (!state.presenceChosen) this.readPresence();
    // queue events reach online agents of the conversation's team only: an away agent (more
    // often), or one looking at other teams' waiting conversations, still sees the queue move
    // the Mine and All lists likewise: a new conversation (in `ai`) sends agents no event
    let lastQueueRead = 0;
    let lastListsRead = Date.now();
    this._queueTimer = setInterval(() => {
      const every = state.presence === "online" ? QUEUE_REFRESH_MS : QUEUE_REFRESH_AWAY_MS;
      if (state.status !== "online") return;
      if (Date.now() - lastListsRead >= LISTS_REFRESH_MS) {
        lastListsRead = Date.now();
        this.sync.refreshLists({watch: true}).catch(() => {});
      }
      if (Date.now() - lastQueueRead < every) return;
      lastQueueRead = Date.now();
      this.sync.refreshQueue().catch(() => {});
    }, QUEUE_REFRESH_AWAY_MS);
  }

  build(user) {
    this.presence = h("button", {type: "button", class: "presence", testid: "presence-toggle",
      title: t("presence.title"), on: {click: () => this.togglePresence()}});
    this.notifyButton = h("button", {type: "button", class: "link", testid: "notify-enable", text: t("notify.enable"),
      hidden: !canAsk(), on: {click: async () => { await askPermission(); this.notifyButton.hidden = !canAsk(); }}});
    const nav = (page, label) => h("button", {type: "button", class: "nav", testid: `nav-${page}`, text: t(label),
      data: {page}, on: {click: () => this.showPage(page)}});
    this.navButtons = user.role === "admin"
      ? [nav("inbox", "nav.inbox"), nav("stats", "nav.stats"), nav("search", "nav.search")] : [];
    this.banner = h("div", {class: "banner", testid: "connection-banner", role: "status", hidden: true});
    this.inbox = h("div", {class: "inbox"}, this.sidebar.el, this.view.el, this.panel.el);
    this.el = h("div", {class: "shell"},
      h("header", {class: "topbar"},
        h("span", {class: "brand", text: t("app.title")}),
        h("nav", {class: "pages"}, this.navButtons),
        h("span", {class: "spacer"}),
        this.notifyButton,
        this.presence,
        h("span", {class: "me", testid: "current-user", text: user.name || user.id}),
        h("button", {type: "button", class: "link", testid: "logout-button", text: t("logout"),
          on: {click: () => this.logout()}})),
      this.banner, this.inbox, this.stats.el, this.search.el, this.toasts);
    document.body.className = "signed-in";
    replace(root, this.el);
    this.renderPresence();
    this.renderBanner();
  }

  /** After each `auth`: resume, unless the socket's role is not the one this workspace was built
   * for (an admin changed it, PROTOCOL 2: the old token was refused with 4401 and the client got a
   * new one). Then the workspace is built again for the new role, as a page load would. */
  ready() {
    const role = this.client.identity && this.client.identity.role;
    if (role && role !== this.state.me.role) {
      roleChanged(role);
      return undefined;  // this workspace is stopped: its client does not go online
    }
    return this.sync.ready();
  }

  stop() {
    this.client.stop();
    this.sidebar.dispose();
    this.view.dispose();
    clearInterval(this._queueTimer);
  }

  async logout() {
    this.stop();
    sessionStorage.removeItem(presenceKey(this.state.me.id));
    await auth.logout();
    signedOut("logout");
  }

  showPage(page) {
    this.page = page;
    this.inbox.hidden = page !== "inbox";
    this.stats.el.hidden = page !== "stats";
    this.search.el.hidden = page !== "search";
    for (const b of this.navButtons) b.setAttribute("aria-current", String(b.dataset.page === page));
    if (page === "stats") this.stats.load();
    if (page === "search") this.search.prepare();
  }

  open(id) {
    if (this.page !== "inbox") this.showPage("inbox");
    this.view.open(id);
    const c = this.state.conversations.get(id);
    if (c) this.panel.open(c);
  }

  preview(c) {
    const known = this.state.previews.get(c.id);
    if (!known || known.lastSeq < c.last_seq) this.sync.preview(c);
    return known ? known.text : null;
  }

  changed({what, id}) {
    const open = id && id === this.state.openId;
    switch (what) {
      case "conversation":
        this.sidebar.render();
        if (open) {
          this.view.render();
          this.panel.render();
        }
        break;
      case "message":
      case "history":
        this.sidebar.render();
        if (open) this.view.renderMessages();
        this.renderTitle();
        break;
      case "stream":
        if (open) this.view.renderStream();
        break;
      case "typing":
        if (open) this.view.renderTyping();
        break;
      case "presence":
        this.renderPresence();
        break;
      case "open":
        this.sidebar.render();
        this.renderTitle();
        break;
      default:  // queue, lists, teams
        this.sidebar.render();
        if (this.state.openId) {
          this.view.render();
          this.panel.render();
        }
    }
  }

  renderTitle() {
    let unread = 0;
    for (const n of this.state.unread.values()) unread += n;
    document.title = unread ? `(${unread}) ${t("app.title")}` : t("app.title");
  }

  renderPresence() {
    const status = this.state.presence;
    this.presence.dataset.status = status;
    this.presence.setAttribute("aria-pressed", String(status === "online"));
    this.presence.textContent = t(`presence.${status}`);
  }

  renderBanner() {
    const status = this.state.status;
    this.banner.hidden = status === "online";
    this.banner.dataset.state = status;
    this.banner.textContent = status === "offline" ? t("banner.offline") : t("banner.connecting");
  }

  async togglePresence() {
    const next = this.state.presence === "online" ? "away" : "online";
    if (next === "online") askPermission().then(() => { this.notifyButton.hidden = !canAsk(); });
    try {
      // a click while the socket (re)connects is not lost: it is said once the console is online
      await this.client.whenOnline();
      await this.sync.setPresence(next);
      sessionStorage.setItem(presenceKey(this.state.me.id), next);
    } catch (error) {
      this.toast(error);
    }
  }

  /** After a reload with no status chosen in this tab: show what the service holds. */
  async readPresence() {
    try {
      const agents = await auth.fetchJSON("/api/v1/agents");
      const me = agents.items.find((a) => a.agent_id === this.state.me.id);
      if (!this.state.presenceChosen && me && me.status === "online") {
        this.state.presence = "online";
        this.renderPresence();
      }
    } catch (error) {
      this.toast(error);
    }
  }

  assigned(c) {
    beep();
    desktop(t("notify.assigned"), t("notify.assignedBody", {id: customerName(c)}), () => this.open(c.id));
  }
}

function startSession(user = auth.user, notice = "") {
  if (!user || (user.role !== "agent" && user.role !== "admin")) {
    auth.logout();
    showLogin(t("login.wrong"));
    return;
  }
  if (session) session.stop();
  session = new Workspace(user);
  if (notice) session.toast.notice(notice);
}

/** The signed-in account was given another role: the same sign-in, a workspace built for that role
 * (an admin's pages shown or gone), and a word about it. */
function roleChanged(role) {
  if (!auth.user) return;
  startSession({...auth.user, role}, t("notice.roleChanged", {role: t(`role.${role}`)}));
}

async function boot() {
  let restored = false;
  try {
    // never signed in here (or signed out since): no cookie to try, and no 401 in the console
    restored = auth.mayHaveSession && await auth.refresh();
  } catch {
    restored = false;  // the service is unreachable: the form says so when the agent signs in
  }
  if (restored) startSession();
  else showLogin();
}

boot();
