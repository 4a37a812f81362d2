// The operator console: a client of the admin API (/admin/v1), nothing more.
//
// Every value from the API is put on the page as text (`el` never parses markup),
// and the admin token lives in this tab's sessionStorage only, sent as a bearer
// header: see service/console/__init__.py for why there is no cookie.

const TOKEN_KEY = "scim-platform.admin-token";
const IDP_TYPES = ["generic", "entra", "okta", "onelogin", "google", "jumpcloud"];
const GUIDE_IDPS = ["entra", "okta", "onelogin", "jumpcloud"];
const IDP_NAMES = {
  generic: "Generic SCIM client",
  entra: "Microsoft Entra ID",
  okta: "Okta",
  onelogin: "OneLogin",
  google: "Google Workspace",
  jumpcloud: "JumpCloud",
};
const PAGE_SIZE = 50;

const main = document.getElementById("main");
const sessionNav = document.getElementById("session");

// Secrets the API shows once (a new tenant's or a rotated token): kept in memory
// only until the page that shows them has been drawn.
let shownOnce = null;
// Why the sign-in form is back, said on it once.
let notice = null;

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// --- the admin API ------------------------------------------------------------------

function adminToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body, token = adminToken()) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(new URL(`admin/v1${path}`, document.baseURI), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (response.status === 401 && token === adminToken()) {
    signOut("The admin token was not accepted any more: sign in again.");
    throw new ApiError(401, "signed out");
  }
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const problem = await response.json();
      if (problem && problem.detail) detail = problem.detail;
    } catch {
      // Not a problem document: the status line says enough.
    }
    throw new ApiError(response.status, detail);
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

const slugPath = (slug) => `/tenants/${encodeURIComponent(slug)}`;

// --- building the page ------------------------------------------------------------------

// el("td", {class: "x"}, "text", otherNode): strings become text nodes, never markup.
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function message(kind, text) {
  return el("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function badge(text) {
  return el("span", { class: `badge ${text}` }, text);
}

// A read-only field with a Copy button: for the Tenant URL and the secrets.
function copyable(label, value, name) {
  const field = el("input", { class: "mono", readOnly: true, value, name, "aria-label": label });
  const copy = el("button", { type: "button", class: "plain" }, "Copy");
  copy.addEventListener("click", async () => {
    field.select();
    try {
      await navigator.clipboard.writeText(value);
      copy.textContent = "Copied";
    } catch {
      // Clipboard access needs https or localhost; the value stays selected to copy by hand.
      copy.textContent = "Selected";
    }
  });
  return el("div", {}, el("div", { class: "muted" }, label), el("div", { class: "copyable" }, field, copy));
}

// Runs `action` with the button disabled; an error is shown in `place`.
async function busy(button, place, action) {
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      place.replaceChildren(message("error", error.message));
    }
  } finally {
    button.disabled = false;
  }
}

// --- signing in and out --------------------------------------------------------------

function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  shownOnce = null;
  notice = reason;
  if (location.hash !== "" && location.hash !== "#/") location.hash = "#/";
  else render();
}

function signInView() {
  sessionNav.replaceChildren();
  const status = el("div", {}, notice ? message("info", notice) : null);
  notice = null;
  const token = el("input", { type: "password", name: "token", autocomplete: "off", required: true, class: "wide" });
  const submit = el("button", { type: "submit" }, "Sign in");
  const form = el(
    "form",
    { class: "panel", "aria-label": "Sign in" },
    el("h1", {}, "Sign in"),
    el("p", { class: "muted" }, "The admin token (SCIM_ADMIN_TOKEN). It is kept in this browser tab only, until you sign out or close it."),
    status,
    el("label", {}, "Admin token", token),
    el("p", {}, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, status, async () => {
      try {
        await api("GET", "/tenants?limit=1", undefined, token.value);
      } catch (error) {
        if (error.status === 401) throw new Error("That admin token was not accepted.");
        throw error;
      }
      sessionStorage.setItem(TOKEN_KEY, token.value);
      render();
    });
  });
  show(form);
  token.focus();
}

function signedInNav() {
  sessionNav.replaceChildren(
    el("a", { href: "#/", class: "brand" }, "Tenants"),
    el("button", { type: "button", class: "plain", onclick: () => signOut("Signed out.") }, "Sign out"),
  );
}

// --- tenants ------------------------------------------------------------------------

async function tenantsView(after) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (after) query.set("after", after);
  const page = await api("GET", `/tenants?${query}`);
  const rows = page.tenants.map((tenant) =>
    el(
      "tr",
      {},
      el("td", {}, el("a", { href: `#/tenants/${encodeURIComponent(tenant.slug)}` }, tenant.slug)),
      el("td", {}, tenant.name),
      el("td", {}, IDP_NAMES[tenant.idp_type] || tenant.idp_type),
      el("td", {}, badge(tenant.status)),
      el("td", {}, when(tenant.created_at)),
    ),
  );
  const pager = el("div", { class: "pager" });
  if (after) pager.append(el("a", { href: "#/" }, "First page"));
  if (page.next) pager.append(el("a", { href: `#/?after=${encodeURIComponent(page.next)}` }, "Next page"));
  show(
    el("div", { class: "row" }, el("h1", {}, "Tenants"), el("a", { href: "#/new" }, "New tenant")),
    el(
      "div",
      { class: "panel" },
      rows.length
        ? el(
            "table",
            { "aria-label": "Tenants" },
            el("thead", {}, el("tr", {}, ["Slug", "Name", "Identity provider", "Status", "Created"].map((h) => el("th", {}, h)))),
            el("tbody", {}, rows),
          )
        : el("p", { class: "muted" }, "No tenants yet."),
      pager,
    ),
  );
}

function newTenantView() {
  const status = el("div");
  const slug = el("input", { name: "slug", required: true, pattern: "[a-z0-9]([a-z0-9\\-]*[a-z0-9])?", maxLength: 63 });
  const name = el("input", { name: "name", required: true });
  const idp = el("select", { name: "idp_type" }, IDP_TYPES.map((type) => el("option", { value: type }, IDP_NAMES[type])));
  const submit = el("button", { type: "submit" }, "Create tenant");
  const form = el(
    "form",
    { class: "panel", "aria-label": "New tenant" },
    el("h1", {}, "New tenant"),
    el("p", { class: "muted" }, "A customer organisation: its own schema, tokens and rate limit. It gets a Secret Token at once, to hand to its IT admin with the Tenant URL."),
    status,
    el(
      "div",
      { class: "row" },
      el("label", {}, "Slug (in the Tenant URL)", slug),
      el("label", {}, "Name", name),
      el("label", {}, "Identity provider", idp),
      submit,
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, status, async () => {
      const tenant = await api("POST", "/tenants", { slug: slug.value, name: name.value, idp_type: idp.value });
      const issued = await api("POST", `${slugPath(tenant.slug)}/tokens`, { name: "initial" });
      shownOnce = { slug: tenant.slug, token: issued.token, created: true };
      location.hash = `#/tenants/${encodeURIComponent(tenant.slug)}`;
    });
  });
  show(form);
  slug.focus();
}

async function tenantView(slug) {
  const [tenant, tokens] = await Promise.all([api("GET", slugPath(slug)), api("GET", `${slugPath(slug)}/tokens`)]);
  const secret = shownOnce && shownOnce.slug === slug ? shownOnce : null;
  shownOnce = null;
  show(
    el(
      "div",
      { class: "row" },
      el("h1", {}, tenant.name, " ", el("span", { class: "muted mono" }, `(${tenant.slug})`)),
      badge(tenant.status),
    ),
    secret ? secretPanel(tenant, secret) : null,
    connectionPanel(tenant),
    tokensPanel(tenant, tokens.tokens),
    requestsPanel(tenant),
    guidePanel(tenant),
    settingsPanel(tenant),
    deletePanel(tenant),
  );
}

function secretPanel(tenant, secret) {
  return el(
    "section",
    { class: "panel secret", "aria-label": "Secret Token" },
    el("h2", {}, secret.created ? "Tenant created: hand these to the customer's IT admin" : "New Secret Token"),
    el("p", {}, "The Secret Token is shown this once. Copy it now: the service keeps only its hash."),
    copyable("Tenant URL", tenant.scim_url, "tenant-url"),
    copyable("Secret Token", secret.token, "secret-token"),
  );
}

function connectionPanel(tenant) {
  return el(
    "section",
    { class: "panel", "aria-label": "Connection" },
    el("h2", {}, "Connection"),
    copyable("Tenant URL", tenant.scim_url, "scim-url"),
    el(
      "p",
      { class: "muted" },
      `Identity provider: ${IDP_NAMES[tenant.idp_type] || tenant.idp_type}. Created ${when(tenant.created_at)}, schema version ${tenant.schema_version}.`,
    ),
  );
}

function tokensPanel(tenant, tokens) {
  const status = el("div");
  const reload = () => tenantView(tenant.slug);
  const rows = tokens.map((token) => {
    const actions = el("td", { class: "actions" });
    if (token.status === "active") {
      const rotate = el("button", { type: "button", class: "plain" }, "Rotate");
      rotate.addEventListener("click", () =>
        busy(rotate, status, async () => {
          if (!confirm(`Rotate "${token.name || token.display_prefix}"? The old token keeps working for the tenant's grace period.`)) return;
          const issued = await api("POST", `${slugPath(tenant.slug)}/tokens/${encodeURIComponent(token.id)}/rotate`, {});
          shownOnce = { slug: tenant.slug, token: issued.token, created: false };
          await reload();
        }),
      );
      const revoke = el("button", { type: "button", class: "danger" }, "Revoke");
      revoke.addEventListener("click", () =>
        busy(revoke, status, async () => {
          if (!confirm(`Revoke "${token.name || token.display_prefix}" now? The IdP using it stops at once.`)) return;
          await api("DELETE", `${slugPath(tenant.slug)}/tokens/${encodeURIComponent(token.id)}`);
          await reload();
        }),
      );
      actions.append(rotate, revoke);
    }
    return el(
      "tr",
      {},
      el("td", {}, token.name || "—"),
      el("td", { class: "mono" }, `${token.display_prefix}…`),
      el("td", {}, badge(token.status)),
      el("td", {}, when(token.created_at)),
      el("td", {}, when(token.last_used_at)),
      el("td", {}, when(token.expires_at)),
      actions,
    );
  });
  const name = el("input", { name: "token-name", placeholder: "e.g. Entra production" });
  const days = el("input", { name: "expires-days", type: "number", min: 1, placeholder: "never" });
  const issue = el("button", { type: "submit" }, "Issue a Secret Token");
  const form = el(
    "form",
    { class: "row" },
    el("label", {}, "Name", name),
    el("label", {}, "Expires in days", days),
    issue,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(issue, status, async () => {
      const body = { name: name.value };
      if (days.value) body.expires_in_seconds = Math.round(Number(days.value) * 86400);
      const issued = await api("POST", `${slugPath(tenant.slug)}/tokens`, body);
      shownOnce = { slug: tenant.slug, token: issued.token, created: false };
      await reload();
    });
  });
  return el(
    "section",
    { class: "panel", "aria-label": "Secret Tokens" },
    el("h2", {}, "Secret Tokens"),
    status,
    tokens.length
      ? el(
          "table",
          { "aria-label": "Tokens" },
          el("thead", {}, el("tr", {}, ["Name", "Prefix", "Status", "Issued", "Last used", "Expires", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, rows),
        )
      : el("p", { class: "muted" }, "No tokens: the tenant's IdP cannot connect until one is issued."),
    form,
  );
}

function requestsPanel(tenant) {
  const status = el("div");
  const body = el("tbody");
  const errorsOnly = el("input", { type: "checkbox", name: "errors-only" });
  const refresh = el("button", { type: "button", class: "plain" }, "Refresh");
  const older = el("button", { type: "button", class: "plain", hidden: true }, "Older");
  let next = null;

  async function load(append) {
    const query = new URLSearchParams({ limit: "25" });
    if (errorsOnly.checked) query.set("status", "4xx,5xx");
    if (append && next) query.set("after", next);
    const page = await api("GET", `${slugPath(tenant.slug)}/requests?${query}`);
    next = page.next;
    older.hidden = !next;
    const rows = page.requests.map((request) =>
      el(
        "tr",
        {},
        el("td", {}, when(request.received_at)),
        el("td", {}, request.client || "—"),
        el("td", { class: "mono" }, request.method),
        el("td", { class: "mono" }, request.query ? `${request.path}?${request.query}` : request.path),
        el("td", { class: `status-${String(request.status)[0]}` }, String(request.status)),
        el("td", {}, [request.scim_type, request.detail].filter(Boolean).join(": ") || "—"),
        el("td", {}, `${request.latency_ms.toFixed(1)} ms`),
      ),
    );
    if (append) body.append(...rows);
    else body.replaceChildren(...rows);
    if (!append && rows.length === 0) {
      body.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No requests recorded yet.")));
    }
  }

  refresh.addEventListener("click", () => busy(refresh, status, () => load(false)));
  older.addEventListener("click", () => busy(older, status, () => load(true)));
  errorsOnly.addEventListener("change", () => busy(refresh, status, () => load(false)));
  busy(refresh, status, () => load(false));
  return el(
    "section",
    { class: "panel", "aria-label": "Provisioning requests" },
    el("h2", {}, "Provisioning requests"),
    el("p", { class: "muted" }, "What the IdP sent and what it got, newest first (bodies are in the admin API)."),
    el("div", { class: "row" }, el("label", {}, el("span", {}, errorsOnly, " Errors only")), refresh),
    status,
    el(
      "table",
      { "aria-label": "Requests" },
      el("thead", {}, el("tr", {}, ["Received", "Client", "Method", "Path", "Status", "Error", "Latency"].map((h) => el("th", {}, h)))),
      body,
    ),
    el("div", { class: "pager" }, older),
  );
}

function guidePanel(tenant) {
  const status = el("div");
  const idp = el(
    "select",
    { name: "guide-idp" },
    GUIDE_IDPS.map((type) => el("option", { value: type, selected: type === tenant.idp_type }, IDP_NAMES[type])),
  );
  const product = el("input", { name: "product", placeholder: "your product's name" });
  const text = el("pre", { class: "guide", hidden: true });
  const showGuide = el("button", { type: "submit" }, "Show the guide");
  const form = el("form", { class: "row" }, el("label", {}, "Identity provider", idp), el("label", {}, "Product", product), showGuide);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(showGuide, status, async () => {
      const query = new URLSearchParams({ idp: idp.value });
      if (product.value) query.set("product", product.value);
      text.textContent = await api("GET", `${slugPath(tenant.slug)}/setup-guide?${query}`);
      text.hidden = false;
    });
  });
  return el(
    "section",
    { class: "panel", "aria-label": "Setup guide" },
    el("h2", {}, "Setup guide for the customer"),
    el("p", { class: "muted" }, "Step by step, with this tenant's URL; never the token."),
    status,
    form,
    text,
  );
}

function settingsPanel(tenant) {
  const status = el("div");
  const name = el("input", { name: "rename", value: tenant.name, required: true });
  const idp = el(
    "select",
    { name: "change-idp" },
    IDP_TYPES.map((type) => el("option", { value: type, selected: type === tenant.idp_type }, IDP_NAMES[type])),
  );
  const save = el("button", { type: "submit" }, "Save");
  const form = el("form", { class: "row" }, el("label", {}, "Name", name), el("label", {}, "Identity provider", idp), save);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(save, status, async () => {
      await api("PATCH", slugPath(tenant.slug), { name: name.value, idp_type: idp.value });
      await tenantView(tenant.slug);
    });
  });
  const enabled = tenant.status === "enabled";
  const toggle = el("button", { type: "button", class: enabled ? "danger" : "" }, enabled ? "Disable tenant" : "Enable tenant");
  toggle.addEventListener("click", () =>
    busy(toggle, status, async () => {
      if (enabled && !confirm(`Disable ${tenant.slug}? Its IdP's requests are refused (403) until it is enabled again.`)) return;
      await api("PATCH", slugPath(tenant.slug), { status: enabled ? "disabled" : "enabled" });
      await tenantView(tenant.slug);
    }),
  );
  return el(
    "section",
    { class: "panel", "aria-label": "Settings" },
    el("h2", {}, "Settings"),
    status,
    form,
    el("p", { class: "muted" }, enabled ? "Disabling refuses the IdP's requests and keeps every user and group." : "Disabled: the IdP's requests are refused with 403."),
    toggle,
  );
}

function deletePanel(tenant) {
  const status = el("div");
  const confirmation = el("input", { name: "confirm-slug", placeholder: tenant.slug, autocomplete: "off" });
  const remove = el("button", { type: "submit", class: "danger", disabled: true }, "Delete tenant");
  confirmation.addEventListener("input", () => {
    remove.disabled = confirmation.value !== tenant.slug;
  });
  const form = el("form", { class: "row" }, el("label", {}, "Type the slug to confirm", confirmation), remove);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(remove, status, async () => {
      await api("DELETE", `${slugPath(tenant.slug)}?confirm=${encodeURIComponent(confirmation.value)}`);
      location.hash = "#/";
    });
  });
  return el(
    "section",
    { class: "panel danger", "aria-label": "Delete" },
    el("h2", {}, "Delete"),
    el("p", {}, "Drops every user, group, event and logged request of this tenant, and its tokens. There is no undo."),
    status,
    form,
  );
}

// --- routing ------------------------------------------------------------------------

async function render() {
  if (!adminToken()) {
    signInView();
    return;
  }
  signedInNav();
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  try {
    const tenant = /^\/tenants\/([^/]+)$/.exec(path || "");
    if (tenant) await tenantView(decodeURIComponent(tenant[1]));
    else if (path === "/new") newTenantView();
    else await tenantsView(new URLSearchParams(query || "").get("after"));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    show(message("error", error.message), el("p", {}, el("a", { href: "#/" }, "Back to the tenants")));
  }
}

window.addEventListener("hashchange", render);
render();
