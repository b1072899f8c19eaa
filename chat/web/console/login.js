// The sign-in form (PROTOCOL 2.1): user name and password; a wrong pair and throttling are
// told in words, never which of the two was wrong.

import {h} from "./dom.js";

export function loginView({t, auth, onSignedIn, notice = ""}) {
  const user = h("input", {testid: "login-user", name: "username", autocomplete: "username", required: true,
    maxlength: 64, autofocus: true});
  const password = h("input", {testid: "login-password", name: "password", type: "password",
    autocomplete: "current-password", required: true});
  const submit = h("button", {type: "submit", class: "primary", testid: "login-submit", text: t("login.submit")});
  const error = h("p", {class: "login-error", testid: "login-error", role: "alert", text: notice});
  const form = h("form", {class: "login", "aria-labelledby": "login-title"},
    h("h1", {id: "login-title", text: t("login.title")}),
    h("label", {}, t("login.user"), user),
    h("label", {}, t("login.password"), password),
    error, submit);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    submit.textContent = t("login.busy");
    error.textContent = "";
    try {
      await auth.login(user.value.trim(), password.value);
      password.value = "";
      onSignedIn();
    } catch (err) {
      error.textContent = err.status === 401 ? t("login.wrong")
        : err.status === 429 ? t("login.throttled", {s: err.retryAfterS || 60})
          : t("login.failed", {code: err.code || err.message});
      password.select();
    } finally {
      submit.disabled = false;
      submit.textContent = t("login.submit");
    }
  });
  return h("div", {class: "login-page"}, form);
}
