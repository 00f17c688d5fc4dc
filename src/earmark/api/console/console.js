// The earmark operator console: plain ES modules, no build step, no third-party code.
// Every request goes to this origin (the sidecar); the page keeps bounded state only:
// at most SAMPLES_MAX samples per watched SKU, WATCHED_MAX watched SKUs, CURSORS_MAX
// cursors per pager, and one page of rows per table (lists are read a page at a time,
// never whole: a store may hold 10,000 SKUs).

const POLL_MS = 2000;
const SAMPLES_MAX = 150; // 5 minutes at one sample every 2 s
const WATCHED_MAX = 8;
const KEY_STORAGE = "earmark.console.key";
const STOCK_KEY_STORAGE = "earmark.console.stock-key";
const OVERVIEW_SKUS = 20; // the overview's stock table: the first page only
const PAGE_SIZE = 50; // rows per page of the SKU, drop and discrepancy lists
const FILL_REQUESTS_MAX = 4; // a short page of GET /v1/skus is topped up at most this often
const CURSORS_MAX = 500; // pages remembered for "Previous page"
const CHANNELS_MAX = 20; // channels shown on a SKU's page (one request each)
const CHANNEL_PAGES_MAX = 4; // ledger pages read per kind of channel event
const CHANNEL_PAGE_EVENTS = 1000; // the ledger's page limit
const SERIES = [
  ["available", "#0b4f9c"],
  ["reserved", "#b35c00"],
  ["committed", "#0b6b2e"],
];

const state = { timer: null, watched: new Map(), selected: null, stockKeyWaiter: null };

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
  const key = "key" in options ? options.key : token(); // an action may bring the stock key
  if (key) headers.authorization = `Bearer ${key}`;
  if (options.body !== undefined) {
    headers["content-type"] = "application/json";
    headers["idempotency-key"] = options.idempotencyKey || `console-${crypto.randomUUID()}`;
  }
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (response.status === 401 && !("key" in options)) askForKey(body && body.detail);
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
  const stock = el("div", { id: "overview-stock" });
  page.replaceChildren(el("h2", { text: "Overview" }), cards, el("h2", { text: "Sell-through" }), watchForm, watched,
    el("h2", { text: "Stock" }), stock,
    el("p", {}, el("a", { href: "#/skus", text: "Every SKU, page by page, with search" })));
  poll(async () => {
    const overview = await api("/v1/overview");
    // one bounded page of the stock index, never the whole of it
    const first = await api(`/v1/skus?limit=${OVERVIEW_SKUS}`);
    stock.replaceChildren(stockTable(first.items.slice(0, OVERVIEW_SKUS), "overview-skus"));
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
  const reorder = await api(`/v1/skus/${encodeURIComponent(sku)}/reorder`);
  const since = new Date(Date.now() - 3600_000).toISOString();
  const events = await api(`/v1/ledger?sku=${encodeURIComponent(sku)}&since=${encodeURIComponent(since)}&limit=50`);
  const channels = await channelViews(sku);
  page.replaceChildren(el("h2", { text: `SKU ${sku}` }), table,
    el("h3", { text: "Channels" }), channels,
    el("h3", { text: "Reorder point and low-stock alert" }), reorderTable(reorder.items),
    el("h3", { text: "Ledger, last hour" }), ledgerTable(events.items));
}

// The channels the ledger names: every channel given a buffer rule (`channel_set`, a
// default or an override of any SKU) and every channel that fenced units of this SKU
// (`allocated`). No route lists channels; the service keeps no index of them outside the
// rules themselves. Bounded: at most CHANNEL_PAGES_MAX ledger pages per kind, at most
// CHANNELS_MAX channels shown (alphabetically first), a note when either cap is reached.
async function channelNames(sku) {
  const names = new Set();
  let capped = false;
  for (const filter of [{ type: "channel_set" }, { type: "allocated", sku }]) {
    let cursor = null;
    for (let i = 0; ; i++) {
      if (i === CHANNEL_PAGES_MAX) { capped = true; break; }
      const params = new URLSearchParams({ ...filter, limit: String(CHANNEL_PAGE_EVENTS) });
      if (cursor) params.set("cursor", cursor);
      const found = await api(`/v1/ledger?${params}`);
      for (const item of found.items) if (item.channel) names.add(item.channel);
      cursor = found.next_cursor;
      if (!cursor) break;
    }
  }
  const sorted = [...names].sort();
  return { names: sorted.slice(0, CHANNELS_MAX), more: sorted.length > CHANNELS_MAX, capped };
}

// Each channel's view of the SKU (GET /v1/skus/{sku}?channel=): what a reserve by that
// channel may take, what a reserve with no channel may take, and its allocation.
async function channelViews(sku) {
  let listed;
  try {
    listed = await channelNames(sku);
  } catch (error) {
    return el("p", { id: "sku-channels", class: "error", text: `The channels cannot be listed: ${error.message}` });
  }
  if (!listed.names.length) return el("p", { id: "sku-channels", text: "No channel has a buffer rule or an allocation of this SKU: every channel sees plain availability." });
  const heads = ["channel", "available to the channel", "unbuffered available", "kept back", "allocated"];
  const table = el("table", { id: "sku-channels", "aria-describedby": "sku-channels-note" },
    el("caption", { text: "Available summed over the SKU's locations; kept back is unbuffered minus the channel's view of the shared pool." }),
    el("thead", {}, el("tr", {}, ...heads.map((h, i) => el("th", { scope: "col", class: i ? "num" : "", text: h })))));
  const body = el("tbody");
  for (const channel of listed.names) {
    try {
      const view = await api(`/v1/skus/${encodeURIComponent(sku)}?channel=${encodeURIComponent(channel)}`);
      const shared = view.available - view.allocated; // the allocation is counted in reserved
      body.append(el("tr", { "data-channel": channel },
        el("th", { scope: "row", text: channel }),
        el("td", { class: "num", "data-field": "available", text: String(view.available) }),
        el("td", { class: "num", "data-field": "unbuffered_available", text: String(view.unbuffered_available) }),
        el("td", { class: "num", "data-field": "kept_back", text: String(Math.max(0, view.unbuffered_available - shared)) }),
        el("td", { class: "num", "data-field": "allocated", text: String(view.allocated) })));
    } catch (error) {
      body.append(el("tr", { "data-channel": channel }, el("th", { scope: "row", text: channel }),
        el("td", { colspan: "4", class: "error", text: error.message })));
    }
  }
  table.append(body);
  const notes = [];
  if (listed.more) notes.push(`Only the first ${CHANNELS_MAX} channels (by name) are shown.`);
  if (listed.capped) notes.push(`The ledger was read ${CHANNEL_PAGES_MAX} pages deep per kind of event: channels named only further on are not listed.`);
  notes.push("Channels come from the recorded ledger, so one configured in the last moments may not be listed yet.");
  return el("div", {}, table, el("p", { id: "sku-channels-note", text: notes.join(" ") }));
}

// Each location's reorder point and whether its alert has fired (GET /v1/skus/{sku}/reorder).
function reorderTable(settings) {
  if (!settings.length) return el("p", { id: "sku-reorder", text: "No reorder point is set at any location." });
  const heads = ["location", "reorder point", "re-arms above", "lead time", "alert"];
  const table = el("table", { id: "sku-reorder" },
    el("thead", {}, el("tr", {}, ...heads.map((h, i) => el("th", { scope: "col", class: i && i < 4 ? "num" : "", text: h })))));
  const body = el("tbody");
  for (const s of settings) {
    const alert = s.low
      ? el("td", { "data-field": "alert", class: "bad" }, "low since ", el("time", { datetime: s.low_since, text: new Date(s.low_since).toLocaleString() }))
      : el("td", { "data-field": "alert", class: "ok", text: "armed" });
    body.append(el("tr", { "data-location": s.location },
      el("th", { scope: "row", text: s.location }),
      el("td", { class: "num", "data-field": "reorder_point", text: String(s.reorder_point) }),
      el("td", { class: "num", "data-field": "rearm_above", text: String(s.rearm_above) }),
      el("td", { class: "num", text: s.lead_time_days == null ? "" : `${s.lead_time_days} days` }),
      alert));
  }
  table.append(body);
  return table;
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
  const results = el("div", { id: "ledger-results" });
  const form = el("form", { id: "ledger-filter", onsubmit: (event) => { event.preventDefault(); show(pages.reset()); } },
    el("label", { for: "ledger-sku", text: "SKU " }), el("input", { id: "ledger-sku", name: "sku", maxlength: "64" }), " ",
    el("label", { for: "ledger-type", text: "type " }), el("input", { id: "ledger-type", name: "type", maxlength: "32" }), " ",
    el("button", { type: "submit", text: "Filter" }));
  const pages = pager("ledger-pages", async (cursor) => {
    const params = new URLSearchParams({ limit: "50" });
    if (form.elements.sku.value.trim()) params.set("sku", form.elements.sku.value.trim());
    if (form.elements.type.value.trim()) params.set("type", form.elements.type.value.trim());
    if (cursor) params.set("cursor", cursor);
    const found = await api(`/v1/ledger?${params}`);
    results.replaceChildren(ledgerTable(found.items));
    setStatus(`${found.items.length} events`);
    return found.next_cursor;
  });
  const show = (loaded) => loaded.catch((error) => results.replaceChildren(el("p", { class: "error", role: "alert", text: error.message })));
  page.replaceChildren(el("h2", { text: "Ledger" }), form, results, pages.node);
  show(pages.reset());
}

// -- SKU list ----------------------------------------------------------------------------

function stockTable(items, id) {
  if (!items.length) return el("p", { id, text: "No stock records on this page." });
  const buckets = ["on_hand", "available", "reserved", "committed"];
  const table = el("table", { id },
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "SKU" }), el("th", { scope: "col", text: "location" }),
      ...buckets.map((b) => el("th", { scope: "col", class: "num", text: b.replace("_", " ") })))));
  const body = el("tbody");
  for (const level of items) {
    body.append(el("tr", { "data-sku": level.sku },
      el("td", {}, el("a", { href: `#/sku/${encodeURIComponent(level.sku)}`, text: level.sku })),
      el("td", { text: level.location }),
      ...buckets.map((b) => el("td", { class: "num", "data-bucket": b, text: String(level[b]) }))));
  }
  table.append(body);
  return table;
}

// A pager over cursor pages: remembers where each shown page started (bounded), so
// "Previous page" goes back without the server keeping anything.
function pager(id, load) {
  const starts = [null];
  let next = null;
  const previous = el("button", { type: "button", id: `${id}-previous`, text: "Previous page", disabled: "" });
  const forward = el("button", { type: "button", id: `${id}-next`, text: "Next page", disabled: "" });
  const where = el("span", { id: `${id}-where`, "aria-live": "polite" });
  const show = async () => {
    next = await load(starts[starts.length - 1]);
    forward.disabled = !next;
    previous.disabled = starts.length < 2;
    where.textContent = ` page ${starts.length} `;
  };
  previous.addEventListener("click", () => { if (starts.length > 1) { starts.pop(); show(); } });
  forward.addEventListener("click", () => {
    if (!next) return;
    starts.push(next);
    if (starts.length > CURSORS_MAX) starts.splice(1, 1);
    show();
  });
  return {
    node: el("p", { class: "pager" }, previous, where, forward),
    reset: () => { starts.splice(1); return show(); },
    reload: show,
  };
}

function renderSkuList(page) {
  stopPolling();
  const results = el("div", { id: "sku-results" });
  const form = el("form", { id: "sku-search", role: "search", onsubmit: (event) => { event.preventDefault(); pages.reset(); } },
    el("label", { for: "sku-prefix", text: "SKUs starting with " }),
    el("input", { id: "sku-prefix", name: "prefix", maxlength: "64", autocomplete: "off" }), " ",
    el("button", { type: "submit", text: "Search" }));
  // GET /v1/skus may answer a short page while more follow (a bounded scan per request):
  // a short page is topped up with a few more requests, never more than FILL_REQUESTS_MAX.
  const pages = pager("sku-pages", async (cursor) => {
    const items = [];
    let at = cursor;
    for (let i = 0; i <= FILL_REQUESTS_MAX && items.length < PAGE_SIZE; i++) {
      const params = new URLSearchParams({ limit: String(PAGE_SIZE - items.length) });
      const prefix = form.elements.prefix.value.trim();
      if (prefix) params.set("prefix", prefix);
      if (at) params.set("cursor", at);
      const found = await api(`/v1/skus?${params}`);
      items.push(...found.items);
      at = found.next_cursor;
      if (!at) break;
    }
    // The index is scanned, not sorted: a prefix's matches may be pages away. A SKU named
    // exactly is read directly too (one request) and shown first.
    const prefix = form.elements.prefix.value.trim();
    const exact = prefix && !cursor ? await api(`/v1/skus/${encodeURIComponent(prefix)}`).catch((error) => {
      if (error.status === 404) return null;
      throw error;
    }) : null;
    results.replaceChildren(
      ...(exact ? [el("p", { id: "sku-exact" }, "Exactly this SKU: ", el("a", { href: `#/sku/${encodeURIComponent(exact.sku)}`, text: exact.sku }),
        ` (${exact.available} available of ${exact.on_hand} on hand)`)] : []),
      stockTable(items.slice(0, PAGE_SIZE), "sku-list"));
    setStatus(`${Math.min(items.length, PAGE_SIZE)} stock records${at ? "; more follow" : ""}`);
    return at;
  });
  page.replaceChildren(el("h2", { text: "SKUs" }), form, results, pages.node);
  pages.reset().catch((error) => results.replaceChildren(el("p", { class: "error", role: "alert", text: error.message })));
}

// -- drops -------------------------------------------------------------------------------

function dropStatus(drop, now) {
  if (drop.open) return "open";
  if (drop.closes_at && Date.parse(drop.closes_at) <= now) return "closed";
  return Date.parse(drop.opens_at) > now ? "scheduled" : "closed";
}

function duration(ms) {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), sec = total % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}h ${pad(m)}m ${pad(sec)}s` : `${m}m ${pad(sec)}s`;
}

// Figures another version of the service may add to a drop: shown when present.
const OPTIONAL_DROP_FIGURES = ["waiting", "offered"];

// The hand-off of freed units to the line, from the ledger: the `waitlist_offered`,
// `waitlist_converted` and `waitlist_expired` events of the last HANDOFF_WINDOW_MS (by
// their occurred_at, against this browser's clock), counted per drop of the page shown.
// Read again at most every HANDOFF_REFRESH_MS, at most HANDOFF_PAGES_MAX pages: only the
// counts are kept, so the page holds no more however long it stays open.
const HANDOFF_WINDOW_MS = 5 * 60_000;
const HANDOFF_REFRESH_MS = 10_000;
const HANDOFF_PAGES_MAX = 3;
const HANDOFF_PAGE_EVENTS = 1000;
const HANDOFF_TYPES = { waitlist_offered: "offered", waitlist_converted: "converted", waitlist_expired: "expired" };

async function handoffFigures(drops) {
  const counts = new Map(drops.map((d) => [d.id, { offered: 0, converted: 0, expired: 0 }]));
  const since = new Date(Date.now() - HANDOFF_WINDOW_MS).toISOString();
  let cursor = null, partial = false;
  for (let i = 0; ; i++) {
    if (i === HANDOFF_PAGES_MAX) { partial = true; break; }
    const params = new URLSearchParams({ since, limit: String(HANDOFF_PAGE_EVENTS) });
    for (const type of Object.keys(HANDOFF_TYPES)) params.append("type", type);
    if (cursor) params.set("cursor", cursor);
    const found = await api(`/v1/ledger?${params}`);
    for (const item of found.items) {
      const figures = counts.get(item.attributes && item.attributes.drop);
      if (figures) figures[HANDOFF_TYPES[item.type]] += 1;
    }
    cursor = found.next_cursor;
    if (!cursor) break;
  }
  return { counts, partial, at: Date.now() };
}

function handoffCells(drop, handoff) {
  if (!drop.waitlist) return [el("td", { class: "num", "data-field": "handoff_rate", text: "" }), el("td", { class: "num", "data-field": "handoff_converted", text: "" })];
  if (!handoff || handoff.error) {
    const why = handoff ? handoff.error : "not read yet";
    return [el("td", { class: "num", "data-field": "handoff_rate", title: why, text: "unknown" }), el("td", { class: "num", "data-field": "handoff_converted", title: why, text: "unknown" })];
  }
  const c = handoff.counts.get(drop.id) || { offered: 0, converted: 0, expired: 0 };
  const atLeast = handoff.partial ? "≥ " : "";
  const rate = c.offered / (HANDOFF_WINDOW_MS / 60_000);
  const ended = c.converted + c.expired;
  return [
    el("td", { class: "num", "data-field": "handoff_rate", "data-offered": String(c.offered),
      title: `${atLeast}${c.offered} offers made in the last ${HANDOFF_WINDOW_MS / 60_000} minutes`,
      text: `${atLeast}${rate.toFixed(1)} (${c.offered})` }),
    el("td", { class: "num", "data-field": "handoff_converted", title: `${c.converted} converted, ${c.expired} expired`,
      text: ended ? `${Math.round((100 * c.converted) / ended)}% of ${ended}` : "none ended" }),
  ];
}

function dropsTable(drops, now, handoff = null) {
  if (!drops.length) return el("p", { text: "No drops." });
  const extra = OPTIONAL_DROP_FIGURES.filter((name) => drops.some((d) => typeof d[name] === "number"));
  const lined = drops.some((d) => d.waitlist);
  const heads = ["drop", "status", "opens", "closes", "SKUs", "per customer", "at limit", "sold", "held", ...extra,
    ...(lined ? ["offers per minute (count)", "offers converted"] : [])];
  // the note above the table says what the hand-off columns count: their description
  const table = el("table", { id: "drops", ...(lined ? { "aria-describedby": "handoff-note" } : {}) },
    el("thead", {}, el("tr", {}, ...heads.map((h, i) => el("th", { scope: "col", class: i >= 5 ? "num" : "", text: h })))));
  const body = el("tbody");
  for (const drop of drops) {
    const status = dropStatus(drop, now);
    const opens = Date.parse(drop.opens_at);
    const countdown = opens > now ? `in ${duration(opens - now)}` : `${duration(now - opens)} ago`;
    body.append(el("tr", { "data-drop": drop.id },
      el("th", { scope: "row", text: drop.id }),
      el("td", { "data-field": "status", class: `drop-${status}`, text: status }),
      el("td", { "data-field": "countdown" }, el("time", { datetime: drop.opens_at, title: drop.opens_at, text: countdown })),
      el("td", { text: drop.closes_at ? new Date(drop.closes_at).toLocaleString() : "never" }),
      el("td", { text: drop.skus.join(", ") }),
      el("td", { class: "num", text: drop.per_customer_limit == null ? "no limit" : String(drop.per_customer_limit) }),
      el("td", { class: "num", "data-field": "customers_at_limit", title: "customers whose live holds and sales equal the limit",
        text: drop.per_customer_limit == null ? "" : drop.customers_at_limit == null ? "unknown" : String(drop.customers_at_limit) }),
      el("td", { class: "num", "data-field": "sold", text: String(drop.sold) }),
      el("td", { class: "num", "data-field": "held", text: String(drop.held) }),
      ...extra.map((name) => el("td", { class: "num", "data-field": name, text: typeof drop[name] === "number" ? String(drop[name]) : "" })),
      ...(lined ? handoffCells(drop, handoff) : [])));
  }
  table.append(body);
  return table;
}

function renderDrops(page) {
  stopPolling();
  const results = el("div", { id: "drop-results" });
  let shown = null;
  let handoff = null; // the last hand-off figures: one page of drops' counts, replaced whole
  const pages = pager("drop-pages", async (cursor) => {
    const moved = shown !== cursor;
    shown = cursor;
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) params.set("cursor", cursor);
    const found = await api(`/v1/drops?${params}`);
    const lined = found.items.filter((d) => d.waitlist);
    if (lined.length && (moved || !handoff || Date.now() - handoff.at >= HANDOFF_REFRESH_MS)) {
      try {
        handoff = await handoffFigures(lined);
      } catch (error) {
        handoff = { error: error.message, at: Date.now() };
      }
    }
    results.replaceChildren(dropsTable(found.items, Date.now(), handoff));
    return found.next_cursor;
  });
  const minutes = HANDOFF_WINDOW_MS / 60_000;
  page.replaceChildren(el("h2", { text: "Drops" }),
    el("p", { text: "Status and countdown by this browser's clock; sold and held are units over every location; at limit counts the customers whose live holds and sales equal the per-customer limit." }),
    el("p", { id: "handoff-note", text: `Hand-off, for drops with a waitlist: offers per minute is the number of offers of freed units made to the next customer in line (waitlist_offered events in the ledger) over the last ${minutes} minutes, divided by ${minutes}, with the count in brackets; offers converted is the share of the offers that ended in those ${minutes} minutes (converted or expired) that the customer committed. Read from the recorded ledger every ${HANDOFF_REFRESH_MS / 1000} s, so the newest offers may not be counted yet; ≥ marks a window too busy to read whole.` }),
    results, pages.node);
  // live: the page shown is read again every POLL_MS (one page: bounded)
  let first = true;
  poll(async () => {
    if (first) { first = false; await pages.reset(); } else await pages.reload();
    return shown;
  });
}

// -- discrepancies -----------------------------------------------------------------------

function askForStockKey(detail) {
  const form = document.getElementById("stock-key-form");
  form.hidden = false;
  document.getElementById("stock-key-error").textContent = detail || "";
  document.getElementById("stock-key-input").value = "";
  document.getElementById("stock-key-input").focus();
  return new Promise((resolve, reject) => { state.stockKeyWaiter = { resolve, reject }; });
}

function settleStockKey(value) {
  const form = document.getElementById("stock-key-form");
  form.hidden = true;
  const waiter = state.stockKeyWaiter;
  state.stockKeyWaiter = null;
  if (!waiter) return;
  if (value) waiter.resolve(value);
  else waiter.reject(new Error("cancelled: no stock key given"));
}

// An operator action (scope `stock`): with the stock key if one was given this session,
// else the read key (it may have the scope). Refused for the scope, it asks for a stock
// key and sends the same request again, under the same Idempotency-Key.
async function act(path, body) {
  const idempotencyKey = `console-${crypto.randomUUID()}`;
  const send = (key) => api(path, { method: "POST", body, key: key || null, idempotencyKey });
  const stockKey = sessionStorage.getItem(STOCK_KEY_STORAGE);
  try {
    return await send(stockKey || token());
  } catch (error) {
    if (error.status !== 403 && !(error.status === 401 && stockKey)) throw error;
    sessionStorage.removeItem(STOCK_KEY_STORAGE);
    const given = await askForStockKey(error.status === 403 ? "This action needs the stock scope." : error.message);
    sessionStorage.setItem(STOCK_KEY_STORAGE, given);
    return send(given);
  }
}

function casesTable(cases, onPick) {
  if (!cases.length) return el("p", { text: "No cases." });
  const heads = ["case", "SKU", "location", "source", "expected", "counted", "difference", "status", "assignee", "due", ""];
  const table = el("table", { id: "cases" },
    el("thead", {}, el("tr", {}, ...heads.map((h, i) => el("th", { scope: "col", class: i >= 4 && i <= 6 ? "num" : "", text: h })))));
  const body = el("tbody");
  for (const c of cases) {
    body.append(el("tr", { "data-case": c.id, class: c.overdue ? "overdue" : "" },
      el("th", { scope: "row", text: c.id }), el("td", { text: c.sku }), el("td", { text: c.location }),
      el("td", { text: c.source }), el("td", { class: "num", text: String(c.expected) }),
      el("td", { class: "num", text: String(c.counted) }),
      el("td", { class: "num", text: `${c.difference > 0 ? "+" : ""}${c.difference}` }),
      el("td", { "data-field": "status", text: c.status }), el("td", { text: c.assignee || "" }),
      el("td", { class: c.overdue ? "bad" : "", text: `${new Date(c.due_at).toLocaleString()}${c.overdue ? " (overdue)" : ""}` }),
      el("td", {}, el("button", { type: "button", text: "Handle", "aria-label": `Handle case ${c.id}`, onclick: () => onPick(c) }))));
  }
  table.append(body);
  return table;
}

// `message`: what the last action on this case did (kept when the panel is drawn again).
function casePanel(panel, c, done, message = "") {
  const result = el("p", { id: "case-result", role: "status", text: message });
  const run = async (path, body, what) => {
    try {
      const updated = await act(path, body);
      result.className = "";
      result.textContent = `${what}: case ${updated.id} is ${updated.status}`;
      await done(updated, result.textContent);
    } catch (error) {
      result.className = "error";
      result.textContent = error.message;
    }
  };
  const assign = el("form", { id: "assign-form", onsubmit: (event) => {
    event.preventDefault();
    const notes = assign.elements.notes.value.trim();
    run(`/v1/discrepancies/${encodeURIComponent(c.id)}/assign`,
      { assignee: assign.elements.assignee.value.trim(), ...(notes ? { notes } : {}) }, "assigned");
  } },
  el("h4", { text: "Assign" }),
  el("label", { for: "assign-name", text: "Assignee " }), el("input", { id: "assign-name", name: "assignee", required: "", maxlength: "128", value: c.assignee || "" }), " ",
  el("label", { for: "assign-notes", text: "Notes " }), el("input", { id: "assign-notes", name: "notes", maxlength: "1000" }), " ",
  el("button", { type: "submit", text: "Assign" }));
  const actions = el("select", { id: "resolve-action", name: "action" },
    el("option", { value: "adjust", text: "adjust on hand to the count" }),
    el("option", { value: "write_off", text: "write the shortfall off" }),
    el("option", { value: "dismiss", text: "dismiss (move nothing)" }));
  const resolve = el("form", { id: "resolve-form", onsubmit: (event) => {
    event.preventDefault();
    const cause = resolve.elements.root_cause.value.trim();
    run(`/v1/discrepancies/${encodeURIComponent(c.id)}/resolve`,
      { action: actions.value, reason: resolve.elements.reason.value.trim(), ...(cause ? { root_cause: cause } : {}) }, "resolved");
  } },
  el("h4", { text: "Resolve" }),
  el("label", { for: "resolve-action", text: "Action " }), actions, " ",
  el("label", { for: "resolve-reason", text: "Reason " }), el("input", { id: "resolve-reason", name: "reason", required: "", maxlength: "1000" }), " ",
  el("label", { for: "resolve-cause", text: "Root cause " }), el("input", { id: "resolve-cause", name: "root_cause", maxlength: "1000" }), " ",
  el("button", { type: "submit", text: "Resolve" }));
  const heading = el("h3", { id: "case-heading", tabindex: "-1", text: `Case ${c.id}: ${c.sku} at ${c.location}` });
  const facts = figures([["status", c.status], ["expected", c.expected], ["counted", c.counted], ["difference", c.difference],
    ["counted at", new Date(c.counted_at).toLocaleString()], ["due", new Date(c.due_at).toLocaleString()]]);
  if (c.status === "resolved") {
    panel.replaceChildren(heading, facts, el("p", { text: `${c.resolution} by ${c.resolved_by}: ${c.reason}` }), result);
  } else {
    panel.replaceChildren(heading, facts, assign, resolve, result);
  }
  heading.focus();
}

function renderDiscrepancies(page) {
  stopPolling();
  const status = el("select", { id: "case-status", name: "status" },
    ...["open", "investigating", "resolved"].map((v) => el("option", { value: v, text: v })));
  const overdue = el("input", { id: "case-overdue", type: "checkbox", name: "overdue" });
  const filter = el("form", { id: "case-filter", onsubmit: (event) => { event.preventDefault(); pages.reset(); } },
    el("label", { for: "case-status", text: "Status " }), status, " ",
    overdue, el("label", { for: "case-overdue", text: " overdue only" }), " ",
    el("button", { type: "submit", text: "Show" }));
  const results = el("div", { id: "case-results" });
  const panel = el("section", { id: "case-panel", "aria-label": "The chosen case" });
  const pick = (c) => casePanel(panel, c, async (updated, message) => {
    await pages.reload();
    casePanel(panel, updated, async () => {}, message);
  });
  const pages = pager("case-pages", async (cursor) => {
    const params = new URLSearchParams({ status: status.value, limit: String(PAGE_SIZE) });
    if (cursor) params.set("cursor", cursor);
    const found = await api(`/v1/discrepancies?${params}`);
    const shown = overdue.checked ? found.items.filter((c) => c.overdue) : found.items;
    results.replaceChildren(casesTable(shown, pick));
    setStatus(`${shown.length} cases on this page`);
    return found.next_cursor;
  });
  page.replaceChildren(el("h2", { text: "Discrepancies" }), filter, results, pages.node, panel);
  pages.reset().catch((error) => results.replaceChildren(el("p", { class: "error", role: "alert", text: error.message })));
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
    else if (current === "skus") renderSkuList(page);
    else if (current === "drops") renderDrops(page);
    else if (current === "discrepancies") renderDiscrepancies(page);
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
document.getElementById("stock-key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  settleStockKey(document.getElementById("stock-key-input").value.trim());
});
document.getElementById("stock-key-cancel").addEventListener("click", () => settleStockKey(""));
window.addEventListener("hashchange", route);
route();
