// The page: the bearer token, the two views (#/conversations, #/files, #/files/<id>).
import { createApi, tokenClaims } from "./api.js";
import { mountConversations } from "./conversations.js";
import { mountFileDetail, mountFileList } from "./files.js";
import { h, replace } from "./dom.js";

const TOKEN_KEY = "lorafiles.token";
const apiBase = document.querySelector('meta[name="lorafiles-api-base"]')?.content || "";

const app = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  localConfig: null,
  api: null,
  view: null, // {unmount()}
  setToken(token) {
    app.token = token.trim();
    if (app.token) sessionStorage.setItem(TOKEN_KEY, app.token);
    else sessionStorage.removeItem(TOKEN_KEY);
    showWho();
    route();
  },
  /** Called by the views on a 401: say why, open the token form. */
  unauthorized(err) {
    const reason = err.details && err.details.reason ? ` (${err.details.reason})` : "";
    replace(document.getElementById("who"), `The API refused the token${reason}: ${err.message}`);
    document.getElementById("token-details").open = true;
  },
};
app.api = createApi({ baseUrl: apiBase, getToken: () => app.token });

function showWho() {
  const who = document.getElementById("who");
  if (!app.token) {
    replace(who, "Not signed in: give a bearer token", app.localConfig?.dev_token ? " or use the local dev token." : ".");
    return;
  }
  const claims = tokenClaims(app.token) || {};
  const expires = claims.exp ? new Date(claims.exp * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC" : "?";
  replace(who, "Signed in as ", h("code", {}, claims.email || claims.sub || "unknown"), ` (token expires ${expires}).`);
}

async function loadLocalConfig() {
  // Only `lorafiles serve` has this endpoint (local mode); elsewhere it is a 404 and nothing is offered.
  try {
    const resp = await fetch("/local/config.json", { headers: { Accept: "application/json" } });
    if (!resp.ok) return null;
    return await resp.json();
  } catch {
    return null;
  }
}

function showDevToken() {
  const box = document.getElementById("dev-token");
  const cfg = app.localConfig;
  if (!cfg || cfg.mode !== "local") return;
  box.hidden = false;
  const button = document.getElementById("use-dev-token");
  if (cfg.dev_token) {
    replace(document.getElementById("dev-token-text"), "Local mode: this server offers a development token for owner ",
      h("code", {}, cfg.dev_token_owner || "?"), ".");
    button.hidden = false;
  } else {
    replace(document.getElementById("dev-token-text"), `Local mode, no dev token: ${cfg.why_no_token}.`);
    button.hidden = true;
  }
}

function route() {
  const hash = window.location.hash || "#/conversations";
  const view = document.getElementById("view");
  if (app.view && app.view.unmount) app.view.unmount();
  app.view = null;
  const [, name, id] = hash.match(/^#\/([a-z-]+)(?:\/([^/?]+))?/) || [];
  for (const [link, on] of [["nav-conversations", name !== "files"], ["nav-files", name === "files"]]) {
    const el = document.getElementById(link);
    if (on) el.setAttribute("aria-current", "page");
    else el.removeAttribute("aria-current");
  }
  if (!app.token) {
    replace(view, h("section", { class: "panel", "aria-labelledby": "signin-h" },
      h("h2", { id: "signin-h" }, "Sign in"),
      h("p", {}, "Every call to the API needs a bearer token (the signed-in user's Supabase access token). ",
        app.localConfig?.dev_token ? "In local mode, use the server's dev token above." : "Paste one under “Bearer token”.")));
    document.title = "Sign in · LoRA Training JSON Files";
    return;
  }
  if (name === "files" && id) app.view = mountFileDetail(view, app, decodeURIComponent(id));
  else if (name === "files") app.view = mountFileList(view, app);
  else app.view = mountConversations(view, app);
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token-input");
  app.setToken(input.value);
  input.value = "";
  document.getElementById("token-details").open = false;
});
document.getElementById("forget-token").addEventListener("click", () => app.setToken(""));
document.getElementById("use-dev-token").addEventListener("click", () => {
  if (app.localConfig?.dev_token) app.setToken(app.localConfig.dev_token);
});
window.addEventListener("hashchange", () => {
  route();
  document.getElementById("view").focus({ preventScroll: true });
});

(async () => {
  app.localConfig = await loadLocalConfig();
  showDevToken();
  showWho();
  route();
  document.body.dataset.ready = "true";
})();
