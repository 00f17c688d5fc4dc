// The earmark operator console: plain ES modules, no build step, no third-party code.
// Every request goes to this origin (the sidecar); the page keeps bounded state only:
// at most SAMPLES_MAX samples per watched SKU and WATCHED_MAX watched SKUs.

const POLL_MS = 2000;
const SAMPLES_MAX = 150; // 5 minutes at one sample every 2 s
const WATCHED_MAX = 8;
const KEY_STORAGE = "earmark.console.key";
const SERIES = [
  ["available", "#0b4f9c"],
  ["reserved", "#b35c00"],
  ["committed", "#0b6b2e"],
];

const state = { timer: null, watched: new Map(), selected: null, ledgerCursors: [null] };

class Problem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

function token() {
  return sessionStorage.getItem(KEY_STORAGE);
}

async function api(path, options = {}) {
  const headers = { accept: "application/json", ...(options.headers || {}) };
  const key = token();
  if (key) headers.authorization = `Bearer ${key}`;
  if (options.body !== undefined) {
    headers["content-type"] = "application/json";
    headers["idempotency-key"] = `console-${crypto.randomUUID()}`;
  }
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (response.status === 401) askForKey(body && body.detail);
  if (!response.ok) throw new Problem(response.status, body);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function figures(pairs) {
  const list = el("dl", { class: "figures" });
  for (const [label, value, id] of pairs) {
    list.append(el("dt", { text: label }), el("dd", { text: String(value), ...(id ? { id } : {}) }));
  }
  return list;
}

function setStatus(message, bad = false) {
  const status = document.getElementById("status");
  status.textContent = message;
  status.className = bad ? "bad" : "";
}

function askForKey(detail) {
  const form = document.getElementById("key-form");
  form.hidden = false;
  document.getElementById("key-error").textContent = detail || "";
  document.getElementById("key-input").focus();
}

function stopPolling() {
  if (state.timer !== null) clearTimeout(state.timer);
  state.timer = null;
}

function poll(work) {
  stopPolling();
  const tick = async () => {
    if (!document.hidden) {
      try {
        await work();
        setStatus(`updated ${new Date().toLocaleTimeString()}`);
      } catch (error) {
        setStatus(error.message, true);
      }
    }
    state.timer = setTimeout(tick, POLL_MS); // after the answer: requests never pile up
  };
  tick();
}

// -- overview ----------------------------------------------------------------------------

function checkList(checks) {
  const list = el("ul", { class: "checks" });
  for (const [name, check] of Object.entries(checks)) {
    const mark = check.ok ? "ok" : check.required === false ? "degraded" : "failing";
    list.append(
      el("li", { class: check.ok ? "ok" : "bad" }, `${name}: ${mark}${check.detail ? ` (${check.detail})` : ""}`),
    );
  }
  return list;
}

function remember(sku, level) {
  const samples = state.watched.get(sku);
  if (!samples) return;
  samples.push({ at: Date.now(), available: level.available, reserved: level.reserved, committed: level.committed });
  if (samples.length > SAMPLES_MAX) samples.splice(0, samples.length - SAMPLES_MAX);
}

function chart(samples) {
  const width = 600, height = 180, pad = 24;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  const last = samples[samples.length - 1];
  svg.setAttribute(
    "aria-label",
    last ? `last ${samples.length} samples; now available ${last.available}, reserved ${last.reserved}, committed ${last.committed}` : "no samples yet",
  );
  const top = Math.max(1, ...samples.flatMap((s) => SERIES.map(([name]) => s[name])));
  for (const [name, colour] of SERIES) {
    const points = samples.map((s, i) => {
      const x = pad + (i / Math.max(1, SAMPLES_MAX - 1)) * (width - 2 * pad);
      const y = height - pad - (s[name] / top) * (height - 2 * pad);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", colour);
    line.setAttribute("stroke-width", "2");
    svg.append(line);
  }
  return svg;
}

function renderOverview(page) {
  const cards = el("div", { class: "grid", id: "overview-cards" });
  const watchForm = el(
    "form",
    {
      onsubmit: (event) => {
        event.preventDefault();
        const sku = watchForm.elements.sku.value.trim();
        if (!sku) return;
        if (!state.watched.has(sku)) {
          if (state.watched.size >= WATCHED_MAX) state.watched.delete(state.watched.keys().next().value);
          state.watched.set(sku, []);
        }
        state.selected = sku;
        watchForm.reset();
      },
    },
    el("label", { for: "watch-sku", text: "Watch a SKU " }),
    el("input", { id: "watch-sku", name: "sku", maxlength: "64", autocomplete: "off" }),
    " ",
    el("button", { type: "submit", text: "Watch" }),
  );
  const watched = el("section", { id: "watched", "aria-label": "Watched SKUs" });
  page.replaceChildren(el("h2", { text: "Overview" }), cards, el("h2", { text: "Sell-through" }), watchForm, watched);
  poll(async () => {
    const overview = await api("/v1/overview");
    const holds = overview.holds, durable = overview.durable, hooks = overview.webhooks;
    cards.replaceChildren(
      el("section", { class: "card" }, el("h3", { text: "Holds" }),
        figures([["live", holds.live, "holds-live"], ["expiring next minute", holds.expiring_next_minute, "holds-expiring"], ["overdue", holds.overdue]])),
      el("section", { class: "card" }, el("h3", { text: "Durable record" }),
        figures([["waiting events", durable.waiting_events, "waiting-events"], ["oldest (s)", durable.oldest_age_seconds.toFixed(2)]])),
      el("section", { class: "card" }, el("h3", { text: "Webhooks" }),
        hooks ? figures([["pending", hooks.pending_messages, "webhook-pending"], ["dispatch behind", hooks.dispatch_behind]]) : el("p", { text: "record unreadable" })),
      el("section", { class: "card" }, el("h3", { text: "Health" }), checkList(overview.checks)),
    );
    const rows = [];
    for (const sku of state.watched.keys()) {
      try {
        const stock = await api(`/v1/skus/${encodeURIComponent(sku)}`);
        remember(sku, stock);
        rows.push([sku, stock]);
      } catch (error) {
        rows.push([sku, { error: error.message }]);
      }
    }
    watched.replaceChildren(...skuRows(rows));
  });
}

function skuRows(rows) {
  if (!rows.length) return [el("p", { text: "Watch a SKU to chart it while this page is open." })];
  const table = el("table", { id: "watched-table" },
    el("thead", {}, el("tr", {}, ...["SKU", "on hand", "available", "reserved", "committed", ""].map((h, i) => el("th", { scope: "col", class: i && i < 5 ? "num" : "", text: h })))));
  const body = el("tbody");
  for (const [sku, stock] of rows) {
    const cells = stock.error
      ? [el("td", { colspan: "4", class: "error", text: stock.error })]
      : ["on_hand", "available", "reserved", "committed"].map((b) => el("td", { class: "num", "data-bucket": b, text: String(stock[b]) }));
    body.append(el("tr", { "data-sku": sku },
      el("td", {}, el("a", { href: `#/sku/${encodeURIComponent(sku)}`, text: sku })), ...cells,
      el("td", {}, el("button", { type: "button", text: "Chart", onclick: () => { state.selected = sku; } }))));
  }
  table.append(body);
  const out = [table];
  const selected = state.selected && state.watched.get(state.selected);
  if (selected) {
    out.push(el("h3", { text: `${state.selected}, last ${Math.round((SAMPLES_MAX * POLL_MS) / 60000)} minutes` }), chart(selected),
      el("p", { class: "legend" }, ...SERIES.map(([name, colour]) => el("span", { style: `color:${colour}`, text: `■ ${name}` }))));
  }
  return out;
}

// -- one SKU -----------------------------------------------------------------------------

async function renderSku(page, sku) {
  stopPolling();
  page.replaceChildren(el("h2", { text: `SKU ${sku}` }), el("p", { text: "Loading…" }));
  const stock = await api(`/v1/skus/${encodeURIComponent(sku)}`);
  const buckets = ["on_hand", "available", "reserved", "committed", "in_transit", "returned", "damaged", "written_off", "inbound"];
  const table = el("table", { id: "sku-locations" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "location" }), ...buckets.map((b) => el("th", { scope: "col", class: "num", text: b.replace("_", " ") })))));
  const body = el("tbody");
  for (const level of stock.locations) {
    body.append(el("tr", {}, el("th", { scope: "row", text: level.location }), ...buckets.map((b) => el("td", { class: "num", text: String(level[b]) }))));
  }
  table.append(body);
  const since = new Date(Date.now() - 3600_000).toISOString();
  const events = await api(`/v1/ledger?sku=${encodeURIComponent(sku)}&since=${encodeURIComponent(since)}&limit=50`);
  page.replaceChildren(el("h2", { text: `SKU ${sku}` }), table, el("h3", { text: "Ledger, last hour" }), ledgerTable(events.items));
}

// -- ledger ------------------------------------------------------------------------------

function ledgerTable(items) {
  if (!items.length) return el("p", { text: "No recorded events." });
  const columns = ["occurred_at", "type", "sku", "location", "actor"];
  const table = el("table", { class: "ledger" },
    el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { scope: "col", text: c.replace("_", " ") })), el("th", { scope: "col", text: "deltas" }))));
  const body = el("tbody");
  for (const item of items) {
    const deltas = Object.entries(item.deltas || {}).map(([b, d]) => `${b} ${d > 0 ? "+" : ""}${d}`).join(", ");
    body.append(el("tr", {}, ...columns.map((c) => el("td", { text: String(item[c] ?? "") })), el("td", { text: deltas })));
  }
  table.append(body);
  return table;
}

function renderLedger(page) {
  stopPolling();
  const form = el("form", { id: "ledger-filter", onsubmit: (event) => { event.preventDefault(); state.ledgerCursors = [null]; load(); } },
    el("label", { for: "ledger-sku", text: "SKU " }), el("input", { id: "ledger-sku", name: "sku", maxlength: "64" }), " ",
    el("label", { for: "ledger-type", text: "type " }), el("input", { id: "ledger-type", name: "type", maxlength: "32" }), " ",
    el("button", { type: "submit", text: "Filter" }));
  const results = el("div", { id: "ledger-results" });
  const pager = el("p", {},
    el("button", { type: "button", text: "Previous page", onclick: () => { if (state.ledgerCursors.length > 1) { state.ledgerCursors.pop(); state.ledgerCursors.pop(); load(); } } }), " ",
    el("button", { type: "button", id: "ledger-next", text: "Next page", onclick: () => load() }));
  page.replaceChildren(el("h2", { text: "Ledger" }), form, results, pager);
  async function load() {
    const params = new URLSearchParams({ limit: "50" });
    if (form.elements.sku.value.trim()) params.set("sku", form.elements.sku.value.trim());
    if (form.elements.type.value.trim()) params.set("type", form.elements.type.value.trim());
    const cursor = state.ledgerCursors[state.ledgerCursors.length - 1];
    if (cursor) params.set("cursor", cursor);
    try {
      const found = await api(`/v1/ledger?${params}`);
      results.replaceChildren(ledgerTable(found.items));
      if (found.next_cursor) state.ledgerCursors.push(found.next_cursor);
      document.getElementById("ledger-next").disabled = !found.next_cursor;
      setStatus(`${found.items.length} events`);
    } catch (error) {
      results.replaceChildren(el("p", { class: "error", text: error.message }));
    }
  }
  load();
}

// -- routing -----------------------------------------------------------------------------

async function route() {
  const page = document.getElementById("page");
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  const current = name || "overview";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === (current === "sku" ? "skus" : current)) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    if (current === "sku" && arg) await renderSku(page, decodeURIComponent(arg));
    else if (current === "ledger") renderLedger(page);
    else if (current === "skus") renderSkuSearch(page);
    else renderOverview(page);
  } catch (error) {
    page.replaceChildren(el("p", { class: "error", role: "alert", text: error.message }));
  }
}

function renderSkuSearch(page) {
  stopPolling();
  const form = el("form", { onsubmit: (event) => { event.preventDefault(); const sku = form.elements.sku.value.trim(); if (sku) location.hash = `#/sku/${encodeURIComponent(sku)}`; } },
    el("label", { for: "find-sku", text: "Find a SKU " }), el("input", { id: "find-sku", name: "sku", maxlength: "64", required: "" }), " ",
    el("button", { type: "submit", text: "Open" }));
  page.replaceChildren(el("h2", { text: "SKUs" }), form);
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, document.getElementById("key-input").value.trim());
  document.getElementById("key-form").hidden = true;
  route();
});
window.addEventListener("hashchange", route);
route();
