// The operator console: a client of the admin API (/admin/v1), nothing more.
//
// Every value from the API is put on the page as text (`el` never parses markup),
// and the admin token lives in this page's memory only, sent as a bearer header:
// see service/console/__init__.py for why there is no cookie, and why not storage.

const IDP_TYPES = ["generic", "entra", "okta", "onelogin", "google", "jumpcloud"];
const GUIDE_IDPS = ["entra", "okta", "onelogin", "jumpcloud"];
const LINK_MODES = ["link", "refuse"];
const MATCH_KEYS = ["externalId", "userName", "email"];
const DEPROVISION_MODES = ["deactivate", "soft_delete", "hard_delete"];
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

// The admin token, from sign-in to sign-out or the page's end.
let signedInWith = null;

function adminToken() {
  return signedInWith;
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
  return fill(node, children, true);
}

// Puts `children` (nested lists of nodes and strings; null, undefined and false
// left out) in `node`, after what it holds if `keep`, else instead of it.
function fill(node, children, keep = false) {
  const nodes = children
    .flat(Infinity)
    .filter((child) => child !== null && child !== undefined && child !== false)
    .map((child) => (child instanceof Node ? child : document.createTextNode(String(child))));
  if (keep) node.append(...nodes);
  else node.replaceChildren(...nodes);
  return node;
}

function show(...nodes) {
  fill(main, nodes);
}

function message(kind, text) {
  return el("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function counted(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

// Runs `action` (see `busy`) when `form` is submitted, instead of the browser's submit.
function submits(form, button, place, action) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, place, action);
  });
}

// A table named `name` with a header row of `headers`, over `body` (a tbody).
function table(name, headers, body) {
  return el(
    "table",
    { "aria-label": name },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        headers.map((header) => el("th", {}, header)),
      ),
    ),
    body,
  );
}

// A titled part of a tenant's page; `name` is how assistive technology (and the
// tests) find it, `title` its heading if other than the name.
function panel({ name, title = name, kind = "" }, ...children) {
  return el("section", { class: `panel ${kind}`.trim(), "aria-label": name }, el("h2", {}, title), children);
}

// A table row of the cells `cells(open)` gives, `open` a button named `label` that
// shows or hides `value`, as indented JSON, in a row of its own below: both rows.
function rowWithDetails(label, value, cells) {
  const open = el("button", { type: "button", class: "plain", "aria-expanded": "false" }, label);
  const row = el("tr", {}, cells(open));
  const details = el(
    "tr",
    { hidden: true },
    el("td", { colspan: row.children.length }, el("pre", { class: "guide" }, JSON.stringify(value, null, 2))),
  );
  open.addEventListener("click", () => {
    details.hidden = !details.hidden;
    open.setAttribute("aria-expanded", String(!details.hidden));
  });
  return [row, details];
}

// A select named `name` of `choices`, `chosen` selected, each shown as `shown(value)`;
// `label` names it where no <label> around it does.
function choice(name, choices, chosen, shown = (value) => value, label = null) {
  return el(
    "select",
    { name, "aria-label": label },
    choices.map((value) => el("option", { value, selected: value === chosen }, shown(value))),
  );
}

// A table row of `cells` and a Remove button that takes it out; `row.read()` is `read()`.
function removableRow(cells, read) {
  const drop = el("button", { type: "button", class: "plain" }, "Remove");
  const row = el(
    "tr",
    {},
    cells.map((cell) => el("td", {}, cell)),
    el("td", {}, drop),
  );
  drop.addEventListener("click", () => row.remove());
  row.read = read;
  return row;
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

// Runs `action` with the button (if any) disabled; what `place` said before goes,
// an error is shown there.
async function busy(button, place, action) {
  if (button) button.disabled = true;
  place.replaceChildren();
  try {
    await action();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      place.replaceChildren(message("error", error.message));
    }
  } finally {
    if (button) button.disabled = false;
  }
}

// Runs a panel's first `load` (see `busy`) with `form`'s fields disabled until it has
// drawn them: what an operator typed before then would be overwritten.
function firstLoad(form, place, load) {
  const fields = [...form.elements];
  for (const field of fields) field.disabled = true;
  busy(null, place, async () => {
    await load();
    for (const field of fields) field.disabled = false;
  });
}

// --- signing in and out --------------------------------------------------------------

function signOut(reason) {
  signedInWith = null;
  shownOnce = null;
  notice = reason;
  if (location.hash !== "" && location.hash !== "#/") location.hash = "#/";
  else render();
}

function signInView() {
  sessionNav.replaceChildren();
  const status = el("div", {}, notice ? message("info", notice) : null);
  notice = null;
  const token = el("input", {
    type: "password",
    name: "token",
    // A password manager may keep it: signing in again after a reload is then a click.
    autocomplete: "current-password",
    required: true,
    class: "wide",
  });
  const submit = el("button", { type: "submit" }, "Sign in");
  const form = el(
    "form",
    { class: "panel", "aria-label": "Sign in" },
    el("h1", {}, "Sign in"),
    el(
      "p",
      { class: "muted" },
      "The admin token (SCIM_ADMIN_TOKEN). It is kept in this page only: signing out, reloading or closing it forgets it.",
    ),
    status,
    el("label", {}, "Admin token", token),
    el("p", {}, submit),
  );
  submits(form, submit, status, async () => {
    try {
      await api("GET", "/tenants?limit=1", undefined, token.value);
    } catch (error) {
      if (error.status === 401) throw new Error(`That admin token was not accepted: ${error.message}.`);
      throw error;
    }
    signedInWith = token.value;
    render();
  });
  show(form);
  token.focus();
}

function signedInNav() {
  sessionNav.replaceChildren(
    el("a", { href: "#/", class: "brand" }, "Tenants"),
    el("a", { href: "#/webhooks" }, "Webhooks"),
    el("button", { type: "button", class: "plain", onclick: () => signOut("Signed out.") }, "Sign out"),
  );
}

// --- tenants ------------------------------------------------------------------------

async function tenantsView(search, after) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (search) query.set("search", search);
  if (after) query.set("after", after);
  const page = await api("GET", `/tenants?${query}`);
  const rows = page.tenants.map((tenant) =>
    el(
      "tr",
      {},
      el("td", {}, el("a", { href: `#/tenants/${encodeURIComponent(tenant.slug)}` }, tenant.slug)),
      el("td", {}, tenant.name),
      el("td", {}, IDP_NAMES[tenant.idp_type] || tenant.idp_type),
      el(
        "td",
        {},
        badge(tenant.status),
        tenant.guard_tripped_at
          ? [
              " ",
              el(
                "span",
                { class: "badge tripped", title: `Since ${when(tenant.guard_tripped_at)}` },
                "guard holding",
              ),
            ]
          : null,
      ),
      el("td", {}, when(tenant.last_request_at)),
      el("td", {}, when(tenant.created_at)),
    ),
  );
  const listed = (more) => {
    const params = new URLSearchParams(search ? { search } : {});
    if (more) params.set("after", more);
    return `#/?${params}`;
  };
  const pager = el("div", { class: "pager" });
  if (after) pager.append(el("a", { href: listed(null) }, "First page"));
  if (page.next) pager.append(el("a", { href: listed(page.next) }, "Next page"));
  const find = el("input", {
    name: "search",
    type: "search",
    value: search || "",
    placeholder: "slug or name",
  });
  const form = el("form", { class: "row", role: "search" }, el("label", {}, "Find a tenant", find));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = find.value.trim() ? `#/?${new URLSearchParams({ search: find.value.trim() })}` : "#/";
  });
  const none = search
    ? `No tenant's slug starts with "${search}", nor does any name contain it.`
    : "No tenants yet.";
  show(
    el("div", { class: "row" }, el("h1", {}, "Tenants"), el("a", { href: "#/new" }, "New tenant")),
    el(
      "div",
      { class: "panel" },
      form,
      rows.length
        ? table(
            "Tenants",
            ["Slug", "Name", "Identity provider", "Status", "Last request", "Created"],
            el("tbody", {}, rows),
          )
        : el("p", { class: "muted" }, none),
      pager,
    ),
  );
}

function webhooksView() {
  show(
    el("h1", {}, "Webhooks"),
    webhooksPanel({ path: "/webhooks", whose: "every tenant's", everyTenant: true }),
  );
}

function newTenantView() {
  const status = el("div");
  const slug = el("input", {
    name: "slug",
    required: true,
    pattern: "[a-z0-9]([a-z0-9\\-]*[a-z0-9])?",
    maxLength: 63,
  });
  const name = el("input", { name: "name", required: true });
  const idp = choice("idp_type", IDP_TYPES, null, (type) => IDP_NAMES[type]);
  const submit = el("button", { type: "submit" }, "Create tenant");
  const form = el(
    "form",
    { class: "panel", "aria-label": "New tenant" },
    el("h1", {}, "New tenant"),
    el(
      "p",
      { class: "muted" },
      "A customer organisation: its own schema, tokens and rate limit. It gets a Secret Token at once, to hand to its IT admin with the Tenant URL.",
    ),
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
  submits(form, submit, status, async () => {
    const tenant = await api("POST", "/tenants", { slug: slug.value, name: name.value, idp_type: idp.value });
    const issued = await api("POST", `${slugPath(tenant.slug)}/tokens`, { name: "initial" });
    shownOnce = { slug: tenant.slug, token: issued.token, created: true };
    location.hash = `#/tenants/${encodeURIComponent(tenant.slug)}`;
  });
  show(form);
  slug.focus();
}

async function tenantView(slug) {
  const [tenant, tokens] = await Promise.all([
    api("GET", slugPath(slug)),
    api("GET", `${slugPath(slug)}/tokens`),
  ]);
  const secret = shownOnce && shownOnce.slug === slug ? shownOnce : null;
  shownOnce = null;
  show(
    el(
      "h1",
      {},
      tenant.name,
      " ",
      el("span", { class: "muted mono" }, `(${tenant.slug})`),
      " ",
      badge(tenant.status),
    ),
    secret ? secretPanel(tenant, secret) : null,
    connectionPanel(tenant),
    tokensPanel(tenant, tokens.tokens),
    guardPanel(tenant),
    usersPanel(tenant),
    requestsPanel(tenant),
    eventsPanel(tenant),
    webhooksPanel({ path: `${slugPath(tenant.slug)}/webhooks`, whose: "this tenant's" }),
    rolesPanel(tenant),
    policyPanel(tenant),
    preloadPanel(tenant),
    linksPanel(tenant),
    mappingPanel(tenant),
    rateLimitPanel(tenant),
    guidePanel(tenant),
    settingsPanel(tenant),
    deletePanel(tenant),
  );
}

function secretPanel(tenant, secret) {
  return panel(
    {
      name: "Secret Token",
      title: secret.created ? "Tenant created: hand these to the customer's IT admin" : "New Secret Token",
      kind: "secret",
    },
    el("p", {}, "The Secret Token is shown this once. Copy it now: the service keeps only its hash."),
    copyable("Tenant URL", tenant.scim_url, "tenant-url"),
    copyable("Secret Token", secret.token, "secret-token"),
  );
}

function connectionPanel(tenant) {
  return panel(
    { name: "Connection" },
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
          if (
            !confirm(
              `Rotate "${token.name || token.display_prefix}"? The old token keeps working for the tenant's grace period.`,
            )
          )
            return;
          const issued = await api(
            "POST",
            `${slugPath(tenant.slug)}/tokens/${encodeURIComponent(token.id)}/rotate`,
            {},
          );
          shownOnce = { slug: tenant.slug, token: issued.token, created: false };
          await reload();
        }),
      );
      const revoke = el("button", { type: "button", class: "danger" }, "Revoke");
      revoke.addEventListener("click", () =>
        busy(revoke, status, async () => {
          if (!confirm(`Revoke "${token.name || token.display_prefix}" now? The IdP using it stops at once.`))
            return;
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
  submits(form, issue, status, async () => {
    const body = { name: name.value };
    if (days.value) body.expires_in_seconds = Math.round(Number(days.value) * 86400);
    const issued = await api("POST", `${slugPath(tenant.slug)}/tokens`, body);
    shownOnce = { slug: tenant.slug, token: issued.token, created: false };
    await reload();
  });
  return panel(
    { name: "Secret Tokens" },
    status,
    tokens.length
      ? table(
          "Tokens",
          ["Name", "Prefix", "Status", "Issued", "Last used", "Expires", ""],
          el("tbody", {}, rows),
        )
      : el("p", { class: "muted" }, "No tokens: the tenant's IdP cannot connect until one is issued."),
    form,
  );
}

function usersPanel(tenant) {
  const status = el("div");
  const body = el("tbody");
  const count = el("p", { class: "muted" });
  const find = el("input", {
    name: "user-search",
    type: "search",
    placeholder: "userName, displayName or externalId",
  });
  const submit = el("button", { type: "submit", class: "plain" }, "Find");
  const more = el("button", { type: "button", class: "plain", hidden: true }, "More");
  const size = 25;
  let shown = 0;

  function rows(user) {
    return rowWithDetails(user.userName, { profile: user.profile, attributes: user.attributes }, (open) => [
      el("td", {}, open),
      el("td", {}, badge(user.state)),
      el("td", {}, user.active ? "active" : "inactive"),
      el("td", {}, user.roles === null ? "—" : user.roles.join(", ") || "none"),
      el("td", {}, when(user.created)),
      el("td", {}, when(user.last_modified)),
    ]);
  }

  async function load(append) {
    const query = new URLSearchParams({ offset: String(append ? shown : 0), limit: String(size) });
    if (find.value.trim()) query.set("search", find.value.trim());
    const page = await api("GET", `${slugPath(tenant.slug)}/users?${query}`);
    shown = (append ? shown : 0) + page.users.length;
    fill(body, [append ? [...body.children] : [], page.users.map(rows)]);
    count.textContent = find.value.trim()
      ? `${counted(page.total, "user")} found; ${shown} shown.`
      : `${counted(page.total, "user")} (managed by the IdP, pre-loaded or soft-deleted); ${shown} shown.`;
    more.hidden = shown >= page.total;
  }

  const form = el(
    "form",
    { class: "row", role: "search" },
    el("label", { class: "grow" }, "Find a user", find),
    submit,
  );
  submits(form, submit, status, () => load(false));
  more.addEventListener("click", () => busy(more, status, () => load(true)));
  busy(null, status, () => load(false));
  return panel(
    { name: "Users" },
    status,
    form,
    count,
    table("Users", ["userName", "State", "Active", "Roles", "Created", "Last modified"], body),
    el("div", { class: "pager" }, more),
  );
}

// What a logged request's details show: what was sent (masked as the log keeps it),
// who sent it, and where to look further.
function sent(request) {
  let body = request.body;
  try {
    // Stored as received (masked): JSON, shown indented, unless it was cut short or not JSON.
    body = body === null ? null : JSON.parse(body);
  } catch {
    // Left as the text it is.
  }
  return {
    operation: request.operation,
    resource_id: request.resource_id,
    user_agent: request.user_agent,
    trace_id: request.trace_id,
    body_bytes: request.body_bytes,
    body_truncated: request.body_truncated,
    body,
  };
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
    const rows = page.requests.flatMap((request) =>
      rowWithDetails(request.method, sent(request), (open) => [
        el("td", {}, when(request.received_at)),
        el("td", {}, request.client || "—"),
        el("td", { class: "mono" }, open),
        el("td", { class: "mono" }, request.query ? `${request.path}?${request.query}` : request.path),
        el("td", { class: `status-${String(request.status)[0]}` }, String(request.status)),
        el("td", {}, [request.scim_type, request.detail].filter(Boolean).join(": ") || "—"),
        el("td", {}, `${request.latency_ms.toFixed(1)} ms`),
      ]),
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
  return panel(
    { name: "Provisioning requests" },
    el(
      "p",
      { class: "muted" },
      "What the IdP sent and what it got, newest first; open a request's method for its body.",
    ),
    el("div", { class: "row" }, el("label", {}, el("span", {}, errorsOnly, " Errors only")), refresh),
    status,
    table("Requests", ["Received", "Client", "Method", "Path", "Status", "Error", "Latency"], body),
    el("div", { class: "pager" }, older),
  );
}

function eventsPanel(tenant) {
  const status = el("div");
  const body = el("tbody");
  const refresh = el("button", { type: "button", class: "plain" }, "Refresh");
  const older = el("button", { type: "button", class: "plain", hidden: true }, "Older");
  let next = null;

  function rows(event) {
    return rowWithDetails(event.type, { data: event.data, previous: event.previous }, (open) => [
      el("td", {}, String(event.sequence)),
      el("td", {}, open),
      el("td", { class: "mono" }, `${event.resource.type} ${event.resource.id}`),
      el("td", {}, when(event.occurred_at)),
    ]);
  }

  async function load(append) {
    const query = new URLSearchParams({ limit: "20" });
    if (append && next) query.set("before", next);
    const page = await api("GET", `${slugPath(tenant.slug)}/events/recent?${query}`);
    next = page.next;
    older.hidden = !next;
    const drawn = page.events.map(rows);
    if (!append && !drawn.length) {
      drawn.push(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No events yet.")));
    }
    fill(body, [append ? [...body.children] : [], drawn]);
  }

  refresh.addEventListener("click", () => busy(refresh, status, () => load(false)));
  older.addEventListener("click", () => busy(older, status, () => load(true)));
  busy(null, status, () => load(false));
  return panel(
    { name: "Events" },
    el(
      "p",
      { class: "muted" },
      "What your product hears of this tenant's changes, newest first (webhooks and the events API carry them).",
    ),
    el("div", { class: "row" }, refresh),
    status,
    table("Events", ["Number", "Type", "Resource", "Occurred"], body),
    el("div", { class: "pager" }, older),
  );
}

const GUARD_STATES = { "": "Default", true: "On", false: "Off" };

function guardPanel(tenant) {
  const status = el("div");
  const state = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  const path = `${slugPath(tenant.slug)}/guard`;
  const fields = {
    enabled: choice("guard-enabled", ["", "true", "false"], "", (value) => GUARD_STATES[value]),
    threshold_percent: el("input", { name: "guard-threshold", type: "number", min: 1, max: 100 }),
    window_seconds: el("input", { name: "guard-window", type: "number", min: 1 }),
    min_users: el("input", { name: "guard-min-users", type: "number", min: 0 }),
  };
  const save = el("button", { type: "submit" }, "Save the guard's settings");
  const form = el(
    "form",
    { class: "row" },
    el("label", {}, "Guard", fields.enabled),
    el("label", {}, "Threshold (%)", fields.threshold_percent),
    el("label", {}, "Window (s)", fields.window_seconds),
    el("label", {}, "Smallest tenant guarded (users)", fields.min_users),
    save,
  );
  submits(form, save, status, async () => {
    const chosen = fields.enabled.value;
    const body = { enabled: chosen === "" ? null : chosen === "true" };
    for (const name of ["threshold_percent", "window_seconds", "min_users"]) {
      body[name] = fields[name].value === "" ? null : Number(fields[name].value);
    }
    await api("PUT", path, body);
    await load();
    fill(status, [message("info", "Saved. A field left empty takes the service's default.")]);
  });

  function drawSettings(guard) {
    const own = guard.override;
    fields.enabled.value = own.enabled === null ? "" : String(own.enabled);
    for (const name of ["threshold_percent", "window_seconds", "min_users"]) {
      fields[name].value = own[name] === null ? "" : String(own[name]);
      fields[name].placeholder = String(guard.settings[name]);
    }
  }

  async function settle(action, question) {
    if (!confirm(question)) return;
    const settled = await api("POST", `${path}/${action}`);
    await load();
    const count = action === "release" ? settled.released : settled.discarded;
    status.replaceChildren(
      message(
        "info",
        `${counted(count, "held event")} ${action === "release" ? "released" : "discarded"}; the guard is armed again.`,
      ),
    );
  }

  async function load() {
    const guard = await api("GET", path);
    drawSettings(guard);
    const rule = guard.settings.enabled
      ? `On: it trips when deprovisions within ${guard.settings.window_seconds} s exceed ${guard.settings.threshold_percent}% of the active users (tenants of at least ${counted(guard.settings.min_users, "user")}).`
      : "Off: deprovisions are delivered however many.";
    const window = guard.window_started_at
      ? `This window: ${counted(guard.window_deprovisions, "deprovision")} of ${counted(guard.window_users, "active user")} since ${when(guard.window_started_at)}.`
      : null;
    if (!guard.holding) {
      fill(state, [
        el("p", {}, "Not holding anything. ", rule),
        window ? el("p", { class: "muted" }, window) : null,
      ]);
      return;
    }
    const release = el("button", { type: "button" }, `Release ${counted(guard.held_events, "event")}`);
    const discard = el("button", { type: "button", class: "danger" }, "Discard them");
    release.addEventListener("click", () =>
      busy(release, status, () =>
        settle(
          "release",
          `Deliver ${counted(guard.held_events, "held event")} to your product now, in the order they were held?`,
        ),
      ),
    );
    discard.addEventListener("click", () =>
      busy(discard, status, () =>
        settle(
          "discard",
          `Delete ${counted(guard.held_events, "held event")}? Your product never learns of those changes; they stay in the tenant's data.`,
        ),
      ),
    );
    state.replaceChildren(
      message(
        "error",
        `Tripped ${when(guard.tripped_at)}: holding ${counted(guard.held_events, "event")} about ${counted(guard.held_users, "user")}.`,
      ),
      el(
        "ul",
        {},
        Object.entries(guard.held_by_type).map(([type, count]) =>
          el("li", {}, el("span", { class: "mono" }, type), `: ${count}`),
        ),
      ),
      el("p", { class: "muted" }, rule, " ", window || ""),
      el("div", { class: "row" }, release, discard),
    );
  }

  const refresh = el("button", { type: "button", class: "plain" }, "Refresh");
  refresh.addEventListener("click", () => busy(refresh, status, load));
  firstLoad(form, status, load);
  return panel(
    { name: "Mass-deprovisioning guard" },
    el("div", { class: "row" }, refresh),
    status,
    state,
    form,
  );
}

// The webhook endpoints at `path` (a tenant's, or "/webhooks": every endpoint, and
// those added there receive every tenant's events), `whose` events they receive.
function webhooksPanel({ path, whose, everyTenant = false }) {
  const status = el("div");
  const list = el("div");

  async function load() {
    const { webhooks } = await api("GET", path);
    if (!webhooks.length) {
      list.replaceChildren(
        el(
          "p",
          { class: "muted" },
          everyTenant
            ? "No endpoint is registered."
            : "No endpoint receives this tenant's events yet, but those for every tenant (Webhooks, above).",
        ),
      );
      return;
    }
    const headers = ["URL", "Events", "Registered", ""];
    if (everyTenant) headers.splice(1, 0, "Tenant");
    list.replaceChildren(table("Webhooks", headers, el("tbody", {}, webhooks.map(endpointRows))));
  }

  function endpointRows(endpoint) {
    const deliveries = el("tr", { hidden: true }, el("td", { colspan: everyTenant ? 5 : 4 }));
    const endpointPath = `/webhooks/${encodeURIComponent(endpoint.id)}`;
    const show = el("button", { type: "button", class: "plain" }, "Deliveries");
    show.addEventListener("click", () =>
      busy(show, status, async () => {
        const { deliveries: recent } = await api("GET", `${endpointPath}/deliveries?limit=20`);
        const dead = recent.some((delivery) => delivery.status === "dead");
        const replay = el("button", { type: "button", hidden: !dead }, "Send dead letters again");
        replay.addEventListener("click", () =>
          busy(replay, status, async () => {
            const { replayed } = await api("POST", `${endpointPath}/replay`, {});
            status.replaceChildren(
              message("info", `${counted(replayed, "delivery", "deliveries")} queued again.`),
            );
            show.click();
          }),
        );
        deliveries.firstChild.replaceChildren(
          recent.length
            ? table(
                "Deliveries",
                ["Tenant", "Event", "Type", "Status", "Attempts", "Last error", "Created"],
                el(
                  "tbody",
                  {},
                  recent.map((delivery) =>
                    el(
                      "tr",
                      {},
                      el("td", { class: "mono" }, delivery.tenant),
                      el("td", {}, String(delivery.sequence)),
                      el("td", { class: "mono" }, delivery.event_type),
                      el("td", {}, badge(delivery.status)),
                      el("td", {}, String(delivery.attempts)),
                      el("td", {}, delivery.last_error || "—"),
                      el("td", {}, when(delivery.created_at)),
                    ),
                  ),
                ),
              )
            : el("p", { class: "muted" }, "Nothing delivered yet."),
          replay,
        );
        deliveries.hidden = false;
      }),
    );
    const rotate = el("button", { type: "button", class: "plain" }, "Rotate secret");
    rotate.addEventListener("click", () =>
      busy(rotate, status, async () => {
        if (!confirm(`Give ${endpoint.url} a new signing secret? The old one signs too for a day.`)) return;
        const rotated = await api("POST", `${endpointPath}/rotate`, {});
        showSecret(
          rotated.secret,
          `The new signing secret, shown this once; the old one signs too until ${when(rotated.previous_secret_expires_at)}.`,
        );
      }),
    );
    const remove = el("button", { type: "button", class: "danger" }, "Remove");
    remove.addEventListener("click", () =>
      busy(remove, status, async () => {
        const sent = endpoint.tenant ? `${endpoint.tenant}'s` : "every tenant's";
        if (!confirm(`Stop sending ${sent} events to ${endpoint.url}?`)) return;
        await api("DELETE", endpointPath);
        await load();
      }),
    );
    return [
      el(
        "tr",
        {},
        el("td", { class: "mono" }, endpoint.url),
        everyTenant ? el("td", { class: "mono" }, endpoint.tenant || "every tenant") : null,
        el("td", {}, endpoint.events ? endpoint.events.join(", ") : "all"),
        el("td", {}, when(endpoint.created_at)),
        el("td", { class: "actions" }, show, rotate, remove),
      ),
      deliveries,
    ];
  }

  const url = el("input", {
    name: "webhook-url",
    type: "url",
    required: true,
    placeholder: "https://product.example.com/scim-events",
  });
  const types = el("input", {
    name: "webhook-events",
    placeholder: "all, or user.created, user.deactivated, …",
  });
  const add = el("button", { type: "submit" }, "Add endpoint");
  const secret = el("div");
  const showSecret = (value, said) =>
    secret.replaceChildren(
      el(
        "div",
        { class: "panel secret", "aria-label": "Signing secret", role: "region" },
        el("p", {}, said),
        copyable("Signing secret", value, "webhook-secret"),
      ),
    );
  const form = el(
    "form",
    { class: "row" },
    el("label", { class: "grow" }, "URL", url),
    el("label", {}, "Event types", types),
    add,
  );
  submits(form, add, status, async () => {
    const body = { url: url.value };
    const chosen = types.value
      .split(",")
      .map((type) => type.trim())
      .filter(Boolean);
    if (chosen.length) body.events = chosen;
    const created = await api("POST", path, body);
    showSecret(
      created.secret,
      "Deliveries are signed (Standard Webhooks) with this secret, shown this once: give it to the endpoint's owner.",
    );
    url.value = "";
    types.value = "";
    await load();
  });
  busy(add, status, load);
  return panel(
    { name: "Webhooks" },
    el("p", { class: "muted" }, `Where your product hears of ${whose} changes.`),
    status,
    secret,
    list,
    form,
  );
}

// "a, b,, c " -> ["a", "b", "c"]
function listed(text) {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);
}

function rolesPanel(tenant) {
  const status = el("div");
  const path = `${slugPath(tenant.slug)}/roles`;
  const defaults = el("input", { name: "default-roles", placeholder: "none" });
  const rules = el("tbody");
  const updated = el("p", { class: "muted" });
  const save = el("button", { type: "submit" }, "Save the mapping");
  const remove = el("button", { type: "button", class: "plain" }, "Remove the mapping");
  const add = el("button", { type: "button", class: "plain" }, "Add a rule");

  function rule({ match = "displayName", value = "", roles = [] } = {}) {
    const matchBy = choice(
      "rule-match",
      ["displayName", "externalId"],
      match,
      undefined,
      "Match the group's",
    );
    const named = el("input", { name: "rule-value", value, required: true, "aria-label": "Group" });
    const granted = el("input", { name: "rule-roles", value: roles.join(", "), "aria-label": "Roles" });
    return removableRow([matchBy, named, granted], () => ({
      match: matchBy.value,
      value: named.value,
      roles: listed(granted.value),
    }));
  }

  function draw(mapping) {
    defaults.value = mapping.default_roles.join(", ");
    fill(rules, mapping.groups.map(rule));
    const mapped = mapping.updated_at !== null;
    updated.textContent = mapped ? `Set ${when(mapping.updated_at)}.` : "No mapping: users have no roles.";
    remove.hidden = !mapped;
  }

  add.addEventListener("click", () => rules.append(rule()));
  const form = el(
    "form",
    {},
    el(
      "div",
      { class: "row" },
      el("label", { class: "grow" }, "Default roles (every provisioned user)", defaults),
    ),
    table("Role rules", ["Match the group's", "Group", "Roles (comma-separated)", ""], rules),
    el("div", { class: "row" }, add, save, remove),
  );
  submits(form, save, status, async () => {
    const body = {
      default_roles: listed(defaults.value),
      groups: [...rules.children].map((row) => row.read()),
    };
    const saved = await api("PUT", path, body);
    draw(saved.mapping);
    fill(status, [
      message("info", `Saved: ${counted(saved.roles_changed, "user's roles", "users' roles")} changed.`),
    ]);
  });
  remove.addEventListener("click", () =>
    busy(remove, status, async () => {
      if (
        !confirm(
          "Remove the role mapping? Every user's roles become null, each reported in user.roles_changed.",
        )
      )
        return;
      const removed = await api("DELETE", path);
      draw(removed.mapping);
      fill(status, [
        message(
          "info",
          `Removed: ${counted(removed.roles_changed, "user's roles", "users' roles")} changed.`,
        ),
      ]);
    }),
  );
  firstLoad(form, status, async () => draw(await api("GET", path)));
  return panel(
    { name: "Roles" },
    el(
      "p",
      { class: "muted" },
      "The roles of your product that the groups the IdP syncs grant, through nesting too.",
    ),
    status,
    updated,
    form,
  );
}

const DEPROVISION_NAMES = {
  deactivate: "hide the user, keep its data",
  soft_delete: "hide the user, purge after the retention period",
  hard_delete: "delete the user at once",
};

function policyPanel(tenant) {
  const status = el("div");
  const updated = el("p", { class: "muted" });
  const path = `${slugPath(tenant.slug)}/provisioning-policy`;
  const linkMode = choice("link-mode", LINK_MODES, null, (mode) =>
    mode === "link" ? "is adopted (linked)" : "is refused (409)",
  );
  const matchOrder = el("input", { name: "match-order", required: true, "aria-label": "Matched by" });
  const deprovision = choice("deprovision-mode", DEPROVISION_MODES, null, (mode) => DEPROVISION_NAMES[mode]);
  const retention = el("input", { name: "retention-days", type: "number", min: 0, required: true });
  const save = el("button", { type: "submit" }, "Save the policy");
  const purge = el("button", { type: "button", class: "plain" }, "Purge now");

  function draw(policy) {
    linkMode.value = policy.link_mode;
    matchOrder.value = policy.match_order.join(", ");
    deprovision.value = policy.deprovision_mode;
    retention.value = String(policy.retention_days);
    updated.textContent = policy.updated_at ? `Set ${when(policy.updated_at)}.` : "The service's defaults.";
  }

  const form = el(
    "form",
    {},
    el(
      "div",
      { class: "row" },
      el("label", {}, "A POSTed user matching a pre-loaded one", linkMode),
      el("label", { class: "grow" }, `Matched by, in order (of ${MATCH_KEYS.join(", ")})`, matchOrder),
    ),
    el(
      "div",
      { class: "row" },
      el("label", {}, "A DELETE from the IdP", deprovision),
      el("label", {}, "Retention (days)", retention),
      save,
      purge,
    ),
  );
  submits(form, save, status, async () => {
    draw(
      await api("PUT", path, {
        link_mode: linkMode.value,
        match_order: listed(matchOrder.value),
        deprovision_mode: deprovision.value,
        retention_days: Number(retention.value),
      }),
    );
    status.replaceChildren(message("info", "Saved."));
  });
  purge.addEventListener("click", () =>
    busy(purge, status, async () => {
      if (
        !confirm("Purge now the soft-deleted users past the retention period? Their data is gone for good.")
      )
        return;
      const purged = await api("POST", `${slugPath(tenant.slug)}/purge`);
      status.replaceChildren(message("info", `Purged ${counted(purged.purged, "user")}.`));
    }),
  );
  firstLoad(form, status, async () => draw(await api("GET", path)));
  return panel(
    { name: "Provisioning policy" },
    el(
      "p",
      { class: "muted" },
      "How the IdP's users meet the ones you pre-loaded, and what its DELETE does. Deactivation (active: false) only ever deactivates.",
    ),
    status,
    updated,
    form,
  );
}

function preloadPanel(tenant) {
  const status = el("div");
  const users = el("textarea", {
    name: "preload-users",
    rows: 6,
    class: "wide mono",
    required: true,
    placeholder: '[{"userName": "ada@example.com", "externalId": "...", "emails": [...]}]',
    "aria-label": "Users (a JSON list of SCIM User bodies)",
  });
  const results = el("tbody");
  const outcome = el("div", { hidden: true }, table("Pre-load results", ["#", "Result", "Detail"], results));
  const load = el("button", { type: "submit" }, "Pre-load");
  const form = el("form", {}, users, el("p", {}, load));
  submits(form, load, status, async () => {
    let parsed;
    try {
      parsed = JSON.parse(users.value);
    } catch (error) {
      throw new Error(`Not JSON: ${error.message}`);
    }
    if (!Array.isArray(parsed)) throw new Error("A JSON list of SCIM User bodies, please: [{...}, {...}].");
    const report = await api("POST", `${slugPath(tenant.slug)}/users/bulk`, { users: parsed });
    const refused = report.results.filter((result) => result.status !== "created");
    fill(
      results,
      refused.map((result) =>
        el(
          "tr",
          {},
          el("td", {}, String(result.index)),
          el("td", {}, badge(result.status)),
          el("td", {}, result.detail || ""),
        ),
      ),
    );
    outcome.hidden = refused.length === 0;
    status.replaceChildren(
      message(
        refused.length ? "error" : "info",
        `${counted(report.created, "user")} pre-loaded${refused.length ? `; ${refused.length} not (below)` : ""}.`,
      ),
    );
  });
  return panel(
    { name: "Pre-load users" },
    el(
      "p",
      { class: "muted" },
      "Your product's existing members, before the customer turns provisioning on (1,000 at a time): hidden from SCIM until the IdP's user matching one is linked to it.",
    ),
    status,
    form,
    outcome,
  );
}

function linksPanel(tenant) {
  const status = el("div");
  const body = el("tbody");
  const empty = el("p", { class: "muted", hidden: true }, "No user has been linked or restored yet.");
  const refresh = el("button", { type: "button", class: "plain" }, "Refresh");

  async function load() {
    const audit = await api("GET", `${slugPath(tenant.slug)}/links`);
    fill(
      body,
      audit.links.map((link) =>
        el(
          "tr",
          {},
          el("td", {}, when(link.linked_at)),
          el("td", {}, badge(link.kind)),
          el("td", { class: "mono" }, link.user_id),
          el("td", {}, `${link.matched_by || "—"}${link.matched_value ? `: ${link.matched_value}` : ""}`),
          el("td", {}, link.client || "—"),
        ),
      ),
    );
    empty.hidden = audit.links.length > 0;
  }

  refresh.addEventListener("click", () => busy(refresh, status, load));
  busy(null, status, load);
  return panel(
    { name: "Link audit" },
    el(
      "p",
      { class: "muted" },
      "Pre-loaded users the IdP adopted, and soft-deleted ones it restored, newest first.",
    ),
    status,
    table("Links", ["When", "Kind", "User id", "Matched by", "Client"], body),
    empty,
    refresh,
  );
}

function mappingPanel(tenant) {
  const status = el("div");
  const path = `${slugPath(tenant.slug)}/attribute-mapping`;
  const fields = el("tbody");
  const save = el("button", { type: "submit" }, "Save the mapping");
  const add = el("button", { type: "button", class: "plain" }, "Add a field");

  function field([name, attribute] = ["", ""]) {
    const named = el("input", { name: "mapping-field", value: name, required: true, "aria-label": "Field" });
    const from = el("input", {
      name: "mapping-path",
      value: attribute,
      required: true,
      class: "wide mono",
      "aria-label": "SCIM attribute",
    });
    return removableRow([named, from], () => [named.value.trim(), from.value.trim()]);
  }

  const draw = (mapping) => fill(fields, Object.entries(mapping.mapping).map(field));
  add.addEventListener("click", () => fields.append(field()));
  const form = el(
    "form",
    {},
    table("Attribute mapping", ["Your field", "SCIM attribute", ""], fields),
    el("div", { class: "row" }, add, save),
  );
  submits(form, save, status, async () => {
    const pairs = [...fields.children].map((row) => row.read());
    const twice = pairs.map(([name]) => name).find((name, index, names) => names.indexOf(name) !== index);
    if (twice !== undefined) throw new Error(`The field ${twice} is mapped twice.`);
    const mapping = Object.fromEntries(pairs);
    draw(await api("PUT", path, { mapping }));
    status.replaceChildren(message("info", "Saved: every user's profile follows it."));
  });
  firstLoad(form, status, async () => draw(await api("GET", path)));
  return panel(
    { name: "Attribute mapping" },
    el(
      "p",
      { class: "muted" },
      "Your product's profile fields and the SCIM attribute each is read from: name.givenName, emails[type eq \"work\"].value, or an extension's, with its URN.",
    ),
    status,
    form,
  );
}

function rateLimitPanel(tenant) {
  const status = el("div");
  const summary = el("p");
  const fields = {
    per_second: el("input", { name: "per-second", type: "number", min: 1 }),
    burst: el("input", { name: "burst", type: "number", min: 1 }),
    concurrency: el("input", { name: "concurrency", type: "number", min: 1 }),
  };
  const save = el("button", { type: "submit" }, "Save");
  const reset = el("button", { type: "button", class: "plain" }, "Back to the defaults");
  const path = `${slugPath(tenant.slug)}/rate-limit`;

  function draw(limit) {
    const own = Object.values(limit.override).some((value) => value !== null);
    fill(summary, [
      `${counted(limit.per_second, "request")} a second, bursts of ${limit.burst} (at most ${limit.burst} in any ${limit.window_seconds} s), `,
      `${limit.concurrency} in flight at once in each process: `,
      own ? "the tenant's own limits." : "the service's defaults.",
    ]);
    for (const [name, input] of Object.entries(fields)) {
      // Empty: the default, whose value in force is the placeholder.
      input.value = limit.override[name] === null ? "" : String(limit.override[name]);
      input.placeholder = String(limit[name]);
    }
    reset.hidden = !own;
  }

  const form = el(
    "form",
    { class: "row" },
    el("label", {}, "Requests a second", fields.per_second),
    el("label", {}, "Burst", fields.burst),
    el("label", {}, "In flight", fields.concurrency),
    save,
    reset,
  );
  submits(form, save, status, async () => {
    const body = Object.fromEntries(
      Object.entries(fields).map(([name, input]) => [name, input.value ? Number(input.value) : null]),
    );
    draw(await api("PUT", path, body));
    status.replaceChildren(message("info", "Saved: every replica applies it at once."));
  });
  reset.addEventListener("click", () =>
    busy(reset, status, async () => {
      await api("DELETE", path);
      draw(await api("GET", path));
      status.replaceChildren(message("info", "Back to the service's defaults."));
    }),
  );
  firstLoad(form, status, async () => draw(await api("GET", path)));
  return panel(
    { name: "Rate limit" },
    status,
    summary,
    form,
    el("p", { class: "muted" }, "Leave a field empty for the service's default."),
  );
}

function guidePanel(tenant) {
  const status = el("div");
  const idp = choice("guide-idp", GUIDE_IDPS, tenant.idp_type, (type) => IDP_NAMES[type]);
  const product = el("input", { name: "product", placeholder: "your product's name" });
  const text = el("pre", { class: "guide", hidden: true });
  const showGuide = el("button", { type: "submit" }, "Show the guide");
  const form = el(
    "form",
    { class: "row" },
    el("label", {}, "Identity provider", idp),
    el("label", {}, "Product", product),
    showGuide,
  );
  submits(form, showGuide, status, async () => {
    const query = new URLSearchParams({ idp: idp.value });
    if (product.value) query.set("product", product.value);
    text.textContent = await api("GET", `${slugPath(tenant.slug)}/setup-guide?${query}`);
    text.hidden = false;
  });
  return panel(
    { name: "Setup guide", title: "Setup guide for the customer" },
    el("p", { class: "muted" }, "Step by step, with this tenant's URL; never the token."),
    status,
    form,
    text,
  );
}

function settingsPanel(tenant) {
  const status = el("div");
  const name = el("input", { name: "rename", value: tenant.name, required: true });
  const idp = choice("change-idp", IDP_TYPES, tenant.idp_type, (type) => IDP_NAMES[type]);
  const save = el("button", { type: "submit" }, "Save");
  const form = el(
    "form",
    { class: "row" },
    el("label", {}, "Name", name),
    el("label", {}, "Identity provider", idp),
    save,
  );
  submits(form, save, status, async () => {
    await api("PATCH", slugPath(tenant.slug), { name: name.value, idp_type: idp.value });
    await tenantView(tenant.slug);
  });
  const enabled = tenant.status === "enabled";
  const toggle = el(
    "button",
    { type: "button", class: enabled ? "danger" : "" },
    enabled ? "Disable tenant" : "Enable tenant",
  );
  toggle.addEventListener("click", () =>
    busy(toggle, status, async () => {
      if (
        enabled &&
        !confirm(`Disable ${tenant.slug}? Its IdP's requests are refused (403) until it is enabled again.`)
      )
        return;
      await api("PATCH", slugPath(tenant.slug), { status: enabled ? "disabled" : "enabled" });
      await tenantView(tenant.slug);
    }),
  );
  return panel(
    { name: "Settings" },
    status,
    form,
    el(
      "p",
      { class: "muted" },
      enabled
        ? "Disabling refuses the IdP's requests and keeps every user and group."
        : "Disabled: the IdP's requests are refused with 403.",
    ),
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
  const form = el(
    "form",
    { class: "row" },
    el("label", {}, "Type the slug to confirm", confirmation),
    remove,
  );
  submits(form, remove, status, async () => {
    await api("DELETE", `${slugPath(tenant.slug)}?confirm=${encodeURIComponent(confirmation.value)}`);
    location.hash = "#/";
  });
  return panel(
    { name: "Delete", kind: "danger" },
    el(
      "p",
      {},
      "Drops every user, group, event and logged request of this tenant, and its tokens. There is no undo.",
    ),
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
    else if (path === "/webhooks") webhooksView();
    else {
      const params = new URLSearchParams(query || "");
      await tenantsView(params.get("search"), params.get("after"));
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    show(message("error", error.message), el("p", {}, el("a", { href: "#/" }, "Back to the tenants")));
  }
}

window.addEventListener("hashchange", render);
render();
