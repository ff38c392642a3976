// The opentokend web console: a client of the public API on the same origin. It starts from
// `GET /` and follows the links of each answer. Pages are views of one document (#/route), so
// that an access code's secret can stay in this module's memory for the "try it" panel without
// ever being written to storage or a URL; leaving a view removes it from the document.

import { call, expand, findLink } from "./api.js";
import { challengeHash, ot1Authorization, ot1Date, passwordHash } from "./crypto.js";
import { alertBox, busy, field, h } from "./dom.js";

const SCOPES = [
  ["account.read", "Read the account"],
  ["accessCodes.read", "List access codes"],
  ["accessCodes.create", "Create access codes"],
  ["accessCodes.delete", "Revoke access codes"],
  ["accessTokens.read", "List access tokens"],
  ["accessTokens.create", "Create access tokens"],
  ["accessTokens.update", "Disable and enable access tokens"],
  ["accessTokens.delete", "Delete access tokens"],
  ["tokens.create", "Tokenize (private tokens)"],
];

// Everything the console knows, in memory only (a reload forgets it; the login cookie stays
// with the browser until it expires or the user logs out).
const state = {
  discovery: null, // links of GET /
  accountId: null, // after login
  accountLinks: null, // links of GET /account/{id}
  email: null,
  lastAccountId: "", // offered on the login page after a confirmation
  secrets: new Map(), // access code -> secret, for the try-it panel (created in this session)
  lastToken: null, // the try-it panel's last token (its URL)
};

const view = document.getElementById("view");
const nav = document.getElementById("nav");

async function discovery() {
  if (!state.discovery) {
    state.discovery = (await call("GET", "/")).links;
  }
  return state.discovery;
}

function loggedIn() {
  return state.accountId !== null;
}

function forgetSession() {
  state.accountId = null;
  state.accountLinks = null;
  state.email = null;
  state.secrets.clear();
  state.lastToken = null;
}

async function loadAccount() {
  const r = await call("GET", `/account/${encodeURIComponent(state.accountId)}`);
  state.accountLinks = r.links;
  state.email = r.doc.email;
}

// A call made with the login cookie: a 401 means the session is over.
async function authed(method, path, opts) {
  try {
    return await call(method, path, opts);
  } catch (e) {
    if (e.status === 401) {
      forgetSession();
      go("#/login");
      throw new Error("your session has ended; log in again");
    }
    throw e;
  }
}

function go(hash) {
  if (location.hash === hash) {
    render();
  } else {
    location.hash = hash;
  }
}

function renderNav() {
  const items = loggedIn()
    ? [
        ["#/account", "Account"],
        ["#/access-codes", "Access codes"],
        ["#/access-tokens", "Access tokens"],
        ["#/try", "Try it"],
      ]
    : [
        ["#/register", "Register"],
        ["#/login", "Log in"],
      ];
  const current = location.hash || "#/";
  nav.replaceChildren(
    ...items.map(([href, label]) =>
      h("li", {}, h("a", { href, "aria-current": current === href ? "page" : false }, label)),
    ),
  );
}

// Leaves the current view: form fields are emptied before the nodes go, so that no secret typed
// or shown stays in the document.
function clearView() {
  view.querySelectorAll("input, textarea").forEach((el) => {
    el.value = "";
  });
  view.querySelectorAll("[data-secret]").forEach((el) => {
    el.textContent = "";
  });
  view.replaceChildren();
}

function page(title, ...children) {
  clearView();
  const heading = h("h1", { tabindex: "-1", text: title });
  view.append(heading, ...children);
  document.title = `${title} · opentokend console`;
  heading.focus();
}

function secretBox(label, value, warning) {
  const out = h("code", { class: "secret", "data-secret": true, text: value });
  const status = h("span", { class: "copied", role: "status" });
  const copy = h("button", {
    type: "button",
    text: "Copy",
    "aria-label": `Copy the ${label.toLowerCase()}`,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(out.textContent);
        status.textContent = "Copied.";
      } catch (e) {
        window.getSelection().selectAllChildren(out);
        status.textContent = "Selected: copy it with Ctrl+C.";
      }
    },
  });
  return h(
    "div",
    { class: "once", role: "region", "aria-label": label },
    h("p", { class: "warning", text: warning }),
    h("p", {}, h("span", { class: "label", text: `${label}: ` }), out, " ", copy, " ", status),
  );
}

// --- pages ----------------------------------------------------------------------------------

function home() {
  if (loggedIn()) {
    go("#/account");
    return;
  }
  page(
    "opentokend console",
    h("p", {
      text:
        "Register an account, log in, and manage the access codes and access tokens of your " +
        "account. Everything here uses the vault's public API.",
    }),
    h(
      "ul",
      {},
      h("li", {}, h("a", { href: "#/register", text: "Register a new account" })),
      h("li", {}, h("a", { href: "#/login", text: "Log in" })),
    ),
  );
}

function register() {
  const err = alertBox("register-error");
  const form = h(
    "form",
    { id: "register-form", novalidate: false },
    field("E-mail address", {
      id: "register-email",
      type: "email",
      name: "email",
      autocomplete: "email",
      required: true,
    }),
    h("button", { type: "submit", text: "Register" }),
    err,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(form, err, async () => {
      const links = await discovery();
      const email = form.querySelector("#register-email").value.trim();
      const r = await call("POST", findLink(links, "registration-register"), { json: { email } });
      secure(email, r);
    });
  });
  page("Register", h("p", { text: "Step 1 of 3: your e-mail address." }), form);
}

function secure(email, reg) {
  const edit = findLink(reg.links, "registration-secure", "edit");
  const qr = findLink(reg.links, "registration-secure-qr");
  const totp = reg.doc.mfa.totp;
  const hashConfig = reg.doc.passwordHashConfig;
  const err = alertBox("secure-error");
  const form = h(
    "form",
    { id: "secure-form" },
    field("Password", {
      id: "secure-password",
      type: "password",
      autocomplete: "new-password",
      required: true,
      minlength: "10",
    }, "At least 10 characters. It never leaves this browser: only its PBKDF2 hash is sent."),
    field("Password again", {
      id: "secure-password2",
      type: "password",
      autocomplete: "new-password",
      required: true,
    }),
    field("Code shown now", {
      id: "secure-code1",
      inputmode: "numeric",
      autocomplete: "one-time-code",
      pattern: "[0-9]{6}",
      required: true,
    }, "The 6 digits your authenticator app shows for this account."),
    field("Next code", {
      id: "secure-code2",
      inputmode: "numeric",
      autocomplete: "one-time-code",
      pattern: "[0-9]{6}",
      required: true,
    }, "Wait until the app shows a new code (every 30 seconds), then type it here."),
    h("button", { type: "submit", text: "Secure my account" }),
    err,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(form, err, async () => {
      const pw = form.querySelector("#secure-password").value;
      if (pw !== form.querySelector("#secure-password2").value) {
        throw new Error("the two passwords differ");
      }
      if (pw.length < 10) {
        throw new Error("the password is shorter than 10 characters");
      }
      const previous = form.querySelector("#secure-code1").value.trim();
      const current = form.querySelector("#secure-code2").value.trim();
      if (!/^[0-9]{6}$/.test(previous) || !/^[0-9]{6}$/.test(current)) {
        throw new Error("each code has 6 digits");
      }
      const passwordHashValue = await passwordHash(pw, hashConfig);
      try {
        await call("POST", edit, {
          json: { passwordHash: passwordHashValue, mfa: { totp: { current, previous } } },
        });
      } catch (e) {
        if (e.status === 400) {
          throw new Error(
            `The codes were not accepted: ${e.message}. Type the code your app shows now, ` +
              "wait for the next one, and try again.",
          );
        }
        throw e;
      }
      page(
        "Check your mail",
        h("p", {
          id: "check-mail",
          text:
            `We sent a confirmation link to ${email}. Open it in this browser to finish ` +
            "the registration; the link works once.",
        }),
      );
    });
  });
  page(
    "Register",
    h("p", { text: "Step 2 of 3: add this account to your authenticator app." }),
    h(
      "figure",
      { class: "qr" },
      h("img", {
        id: "secure-qr",
        src: qr,
        width: "200",
        height: "200",
        alt: "QR code of the account's TOTP key (the same key is written below)",
      }),
      h(
        "figcaption",
        {},
        "Scan it, or type the key: ",
        h("code", { id: "secure-key", "data-secret": true, text: totp.keyBase32 }),
      ),
    ),
    h("p", { text: "Step 3 of 3: choose a password and prove the app works." }),
    form,
  );
}

function confirm(id, code) {
  page("Confirm", h("p", { id: "confirm-status", role: "status", text: "Confirming…" }));
  // The code must not stay in the address bar or the history.
  history.replaceState(null, "", "#/confirm");
  call("GET", `/registration/${id}/confirm/${code}`).then(
    (r) => {
      state.lastAccountId = r.doc.accountId;
      page(
        "Account confirmed",
        h("p", { text: "Your account is ready. Log in with this account id:" }),
        h("p", {}, h("code", { id: "confirm-account", text: r.doc.accountId })),
        h("p", {}, h("a", { href: "#/login", id: "confirm-login", text: "Log in" })),
      );
    },
    (e) => {
      page(
        "Confirmation failed",
        h("p", { class: "error", role: "alert", text: e.message }),
        h("p", {
          text: "The link works once and expires; register again if you need a new one.",
        }),
      );
    },
  );
}

function login() {
  const err = alertBox("login-error");
  const form = h(
    "form",
    { id: "login-form" },
    field("Account id", {
      id: "login-account",
      autocomplete: "username",
      required: true,
      spellcheck: "false",
    }),
    field("Password", {
      id: "login-password",
      type: "password",
      autocomplete: "current-password",
      required: true,
    }),
    field("Authenticator code", {
      id: "login-code",
      inputmode: "numeric",
      autocomplete: "one-time-code",
      pattern: "[0-9]{6}",
      required: true,
    }),
    h("button", { type: "submit", text: "Log in" }),
    err,
  );
  form.querySelector("#login-account").value = state.lastAccountId;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(form, err, async () => {
      const id = form.querySelector("#login-account").value.trim();
      if (!/^[A-Za-z0-9_-]+$/.test(id)) {
        throw new Error("the account id has letters, digits, - and _ only");
      }
      const href = expand(findLink(await discovery(), "account-login"), { accountId: id });
      const challenge = await call("GET", href);
      const pw = await passwordHash(
        form.querySelector("#login-password").value,
        challenge.doc.passwordHashConfig,
      );
      const hash = await challengeHash(pw, challenge.doc.challengeHashConfig);
      const totp = form.querySelector("#login-code").value.trim();
      try {
        await call("POST", href, { json: { challengeHash: hash, mfa: { totp } } });
      } catch (e) {
        if (e.status === 401) {
          throw new Error("Login failed: the account id, password or code is wrong.");
        }
        throw e;
      }
      state.accountId = id;
      await loadAccount();
      go("#/account");
    });
  });
  page("Log in", form);
}

async function requireLogin() {
  if (!loggedIn()) {
    go("#/login");
    return false;
  }
  return true;
}

async function account() {
  if (!(await requireLogin())) {
    return;
  }
  const err = alertBox("account-error");
  const logout = h("button", { type: "button", id: "logout", text: "Log out" });
  const form = h("form", { id: "logout-form" }, logout, err);
  form.addEventListener("submit", (ev) => ev.preventDefault());
  logout.addEventListener("click", () =>
    busy(form, err, async () => {
      await call("POST", findLink(state.accountLinks, "account-logout"), { json: {} });
      forgetSession();
      go("#/login");
    }),
  );
  page(
    "Account",
    h(
      "dl",
      {},
      h("dt", { text: "E-mail" }),
      h("dd", { id: "account-email", text: state.email }),
      h("dt", { text: "Account id" }),
      h("dd", {}, h("code", { id: "account-id", text: state.accountId })),
    ),
    form,
  );
}

async function accessCodes() {
  if (!(await requireLogin())) {
    return;
  }
  const collection = findLink(state.accountLinks, "account-accessCode");
  const err = alertBox("codes-error");
  const created = h("div", { id: "codes-created" });
  const list = h("tbody", { id: "codes-list" });
  const form = h(
    "form",
    { id: "codes-form" },
    field("Description", { id: "codes-description", maxlength: "256" }, "Optional."),
    h("button", { type: "submit", text: "Create access code" }),
    err,
  );
  async function refresh() {
    const r = await authed("GET", collection);
    list.replaceChildren(
      ...r.doc.items.map((item) => {
        const revoke = h("button", {
          type: "button",
          text: "Revoke",
          "aria-label": `Revoke access code ${item.code}`,
        });
        revoke.addEventListener("click", () =>
          busy(form, err, async () => {
            await authed("DELETE", item.href);
            state.secrets.delete(item.code);
            await refresh();
          }),
        );
        return h(
          "tr",
          { "data-code": item.code },
          h("td", {}, h("code", { text: item.code })),
          h("td", { text: item.description }),
          h("td", { text: item.expires }),
          h("td", {}, revoke),
        );
      }),
    );
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(form, err, async () => {
      const description = form.querySelector("#codes-description").value;
      const r = await authed("POST", collection, { json: { description } });
      state.secrets.set(r.doc.code, r.doc.secret);
      form.querySelector("#codes-description").value = "";
      created.replaceChildren(
        h("p", {}, "Access code ", h("code", { id: "codes-new-code", text: r.doc.code })),
        secretBox(
          "Secret",
          r.doc.secret,
          "Copy the secret now: it is shown only this once and cannot be recovered. " +
            "This console keeps it in memory for the try-it panel until you log out or reload.",
        ),
      );
      await refresh();
    });
  });
  page(
    "Access codes",
    h("p", { text: "An access code and its secret sign tokenize and detokenize requests." }),
    created,
    form,
    h(
      "table",
      {},
      h("caption", { text: "Your access codes" }),
      h(
        "thead",
        {},
        h("tr", {}, ...["Code", "Description", "Expires", ""].map((t) => h("th", { text: t }))),
      ),
      list,
    ),
  );
  await busy(form, err, refresh);
}

async function accessTokens() {
  if (!(await requireLogin())) {
    return;
  }
  const collection = findLink(state.accountLinks, "account-accessTokens");
  const err = alertBox("tokens-error");
  const created = h("div", { id: "tokens-created" });
  const list = h("tbody", { id: "tokens-list" });
  const scopes = h(
    "fieldset",
    {},
    h("legend", { text: "Scope" }),
    ...SCOPES.map(([scope, label]) =>
      h(
        "div",
        { class: "check" },
        h("input", { type: "checkbox", id: `scope-${scope}`, value: scope, name: "scope" }),
        h("label", { for: `scope-${scope}` }, `${label} `, h("code", { text: scope })),
      ),
    ),
  );
  const form = h(
    "form",
    { id: "tokens-form" },
    field("Name", { id: "tokens-name", required: true, maxlength: "255" }),
    scopes,
    field("Expires on", { id: "tokens-expiry", type: "date" }, "Optional (UTC midnight)."),
    h("button", { type: "submit", text: "Create access token" }),
    err,
  );
  async function refresh() {
    const r = await authed("GET", collection);
    list.replaceChildren(
      ...r.doc.items.map((item) => {
        const item_href = `${collection}/${encodeURIComponent(item.id)}`;
        const active = item.status === "active";
        const toggle = h("button", {
          type: "button",
          class: "toggle",
          text: active ? "Disable" : "Enable",
          "aria-label": `${active ? "Disable" : "Enable"} access token ${item.name}`,
        });
        toggle.addEventListener("click", () =>
          busy(form, err, async () => {
            await authed("PATCH", item_href, {
              json: { status: active ? "inactive" : "active" },
            });
            await refresh();
          }),
        );
        const del = h("button", {
          type: "button",
          class: "delete",
          text: "Delete",
          "aria-label": `Delete access token ${item.name}`,
        });
        del.addEventListener("click", () =>
          busy(form, err, async () => {
            await authed("DELETE", item_href);
            await refresh();
          }),
        );
        return h(
          "tr",
          { "data-token": item.id, "data-status": item.status },
          h("td", { text: item.name }),
          h("td", { class: "status", text: item.status }),
          h("td", { text: (item.scope || []).join(" ") }),
          h("td", { text: item.expirationDate }),
          h("td", {}, toggle, " ", del),
        );
      }),
    );
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(form, err, async () => {
      const name = form.querySelector("#tokens-name").value.trim();
      const scope = Array.from(form.querySelectorAll("input[name=scope]:checked"), (c) => c.value);
      const body = { name, scope };
      const day = form.querySelector("#tokens-expiry").value;
      if (day) {
        body.expirationDate = `${day}T00:00:00Z`;
      }
      const r = await authed("POST", collection, { json: body });
      form.querySelector("#tokens-name").value = "";
      created.replaceChildren(
        h("p", {}, "Access token ", h("strong", { text: r.doc.name }), " created."),
        secretBox(
          "Access token",
          r.doc.token,
          "Copy the token now: it is shown only this once and cannot be recovered.",
        ),
      );
      await refresh();
    });
  });
  page(
    "Access tokens",
    h("p", { text: "Bearer tokens with a scope, for scripts and services." }),
    created,
    form,
    h(
      "table",
      {},
      h("caption", { text: "Your access tokens" }),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...["Name", "Status", "Scope", "Expires", ""].map((t) => h("th", { text: t })),
        ),
      ),
      list,
    ),
  );
  await busy(form, err, refresh);
}

// Sends one OT1-signed request with the pair (code, secret).
async function signed(method, target, code, secret, body) {
  const headers = {
    host: location.host,
    "content-type": "text/plain; charset=utf-8",
    "x-opentoken-date": ot1Date(),
  };
  const bytes = new TextEncoder().encode(body);
  const authorization = await ot1Authorization(method, target, headers, bytes, code, secret);
  return call(method, target, {
    body: method === "GET" ? undefined : bytes,
    headers: {
      "Content-Type": headers["content-type"],
      "X-OpenToken-Date": headers["x-opentoken-date"],
      Authorization: authorization,
      Accept: "*/*",
    },
  });
}

async function tryIt() {
  if (!(await requireLogin())) {
    return;
  }
  const tokenize = expand(findLink(state.accountLinks, "account-token-create"), {});
  const err = alertBox("try-error");
  const pairs = Array.from(state.secrets.keys());
  const select = h(
    "select",
    { id: "try-pair" },
    h("option", { value: "", text: "Type a code and secret below" }),
    ...pairs.map((c) => h("option", { value: c, text: c })),
  );
  if (pairs.length > 0) {
    select.value = pairs[pairs.length - 1];
  }
  const manual = h(
    "div",
    { id: "try-manual" },
    field("Access code", { id: "try-code", autocomplete: "off", spellcheck: "false" }),
    field("Secret", { id: "try-secret", type: "password", autocomplete: "off" },
      "Kept in this page's memory only."),
  );
  const syncManual = () => {
    manual.hidden = select.value !== "";
  };
  select.addEventListener("change", syncManual);
  syncManual();
  const pair = () => {
    if (select.value) {
      return [select.value, state.secrets.get(select.value)];
    }
    const code = manual.querySelector("#try-code").value.trim();
    const secret = manual.querySelector("#try-secret").value;
    if (!code || !secret) {
      throw new Error("choose an access code, or type a code and its secret");
    }
    return [code, secret];
  };
  const tokenOut = h("output", { id: "try-token", for: "try-text" });
  const plainOut = h("output", { id: "try-plain" });
  const detok = h("button", { type: "button", id: "try-detokenize", text: "Detokenize" });
  const form = h(
    "form",
    { id: "try-form" },
    h("div", { class: "field" }, h("label", { for: "try-pair", text: "Access code pair" }), select),
    manual,
    field("Text to tokenize", { tag: "textarea", id: "try-text", rows: "3", required: true }),
    h("button", { type: "submit", id: "try-tokenize", text: "Tokenize" }),
    " ",
    detok,
    err,
    h("p", {}, h("span", { class: "label", text: "Token: " }), tokenOut),
    h("p", {}, h("span", { class: "label", text: "Detokenized: " }), plainOut),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(form, err, async () => {
      const [code, secret] = pair();
      const text = form.querySelector("#try-text").value;
      const r = await signed("POST", tokenize, code, secret, text);
      state.lastToken = r.headers.get("Location");
      tokenOut.textContent = state.lastToken.slice(state.lastToken.lastIndexOf("/") + 1);
      plainOut.textContent = "";
    });
  });
  detok.addEventListener("click", () =>
    busy(form, err, async () => {
      if (!state.lastToken) {
        throw new Error("tokenize a text first");
      }
      const [code, secret] = pair();
      const r = await signed("GET", state.lastToken, code, secret, "");
      plainOut.textContent = r.text;
    }),
  );
  page(
    "Try it",
    h("p", {
      text:
        "Tokenize a text and get it back, signing each request in this browser with an " +
        "access code pair (OT1-HMAC-SHA256).",
    }),
    form,
  );
}

// --- routing --------------------------------------------------------------------------------

const routes = {
  "#/": home,
  "#/register": register,
  "#/login": login,
  "#/account": account,
  "#/access-codes": accessCodes,
  "#/access-tokens": accessTokens,
  "#/try": tryIt,
  "#/confirm": () => go("#/login"),
};

async function render() {
  const hash = location.hash || "#/";
  const m = /^#\/registration\/([A-Za-z0-9_-]+)\/confirm\/([A-Za-z0-9_-]+)$/.exec(hash);
  renderNav();
  try {
    if (m) {
      confirm(m[1], m[2]);
    } else if (routes[hash]) {
      await routes[hash]();
    } else {
      page("Not found", h("p", {}, "No such page. ", h("a", { href: "#/", text: "Start" })));
    }
  } catch (e) {
    page("Error", h("p", { class: "error", role: "alert", text: e.message }));
  }
  renderNav();
}

window.addEventListener("hashchange", render);
render();
