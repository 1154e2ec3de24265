// The DWCP dashboard: polls the admin API every 2 s and draws what it says.
//
// No framework and no build step. Everything the API returns goes into the
// page as text (textContent) or SVG attributes, never as markup, and the
// content security policy allows no inline code: a tenant's app or flag
// name can never run as script here.

const POLL_MS = 2000;
// What the charts show, and what each point averages over.
const KEEP_MS = 5 * 60 * 1000;
const WINDOW_S = 10;
// Node-wide lists (flags, keys) change rarely: every 5th poll.
const SLOW_EVERY = 5;
// sessionStorage: gone with the tab, never sent anywhere by the browser.
const TOKEN_KEY = "dwcp-admin-token";

const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------- the API

/** The admin API refused the token (401): back to the form. */
class Unauthorized extends Error {}

/** Any other refusal, with the API's own words. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(path, method = "GET") {
  const response = await fetch(path, {
    method,
    cache: "no-store",
    headers: { Authorization: `Bearer ${token()}` },
  });
  if (response.status === 401) throw new Unauthorized(await errorText(response));
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

async function errorText(response) {
  const text = await response.text();
  try {
    return JSON.parse(text).error || text;
  } catch {
    return text || response.statusText;
  }
}

/** A read that may be refused (a tenant's token, an app without an
 *  experiment): `{value}` or `{error}`, so one section cannot blank the page. */
async function maybe(path) {
  try {
    return { value: await api(path) };
  } catch (e) {
    if (e instanceof ApiError) return { error: e.message, status: e.status };
    throw e;
  }
}

async function up(path) {
  try {
    return (await fetch(path, { cache: "no-store" })).ok;
  } catch {
    return false;
  }
}

const appPath = (id) => id.split("/").map(encodeURIComponent).join("/");

// ------------------------------------------------------- what the page keeps

const view = {
  apps: [],
  status: new Map(), // id -> GET /v1/apps/T/A, or {error}
  rollout: new Map(), // id -> GET …/rollout, or {error}
  prom: null, // the parsed /metrics of the last poll, or null
  promError: null,
  health: { ok: false, ready: false },
  selected: decodeURIComponent(location.hash.slice(1)) || null,
  detail: null, // {id, versions, experiment, snapshots}
  flags: null,
  keys: null,
  nodes: null, // GET /v1/nodes, or {error}
};

// The series of an app's totals: `*` is no version's name.
const ALL = "*";
// Chart points per app: metric -> version or ALL -> [[ms, value|null]].
const charts = new Map();
// Counters of each app version from /metrics, to take rates over WINDOW_S.
// (Not /v1/metrics: its 10 s slots make a 10 s summary the current,
// partly filled slot, a sawtooth when polled every 2 s.)
const counters = new Map();

function series(id, metric, label) {
  if (!charts.has(id)) charts.set(id, new Map());
  const metrics = charts.get(id);
  if (!metrics.has(metric)) metrics.set(metric, new Map());
  const labels = metrics.get(metric);
  if (!labels.has(label)) labels.set(label, []);
  return labels.get(label);
}

function push(id, metric, label, t, value) {
  const points = series(id, metric, label);
  points.push([t, value]);
  while (points.length && points[0][0] < t - KEEP_MS) points.shift();
}

// ------------------------------------------------------------ /metrics text

/** The per-version series of the OpenMetrics text the node exports:
 *  `tenant/app` -> version -> {requests, errors, cold, buckets: [[le, n]]},
 *  with the app's totals under ALL. */
function parseMetrics(text) {
  const apps = new Map();
  let live = null;
  const line = /^([a-z_]+)(?:\{([^}]*)\})?\s+(\S+)/;
  const label = /([a-z_]+)="((?:[^"\\]|\\.)*)"/g;
  for (const row of text.split("\n")) {
    const m = line.exec(row);
    if (!m) continue;
    const [, name, rawLabels, rawValue] = m;
    const value = Number(rawValue);
    if (name === "dwcp_live_instances") live = value;
    const labels = {};
    for (const l of (rawLabels || "").matchAll(label)) labels[l[1]] = l[2];
    if (!labels.tenant || !labels.app || !labels.version) continue;
    const id = `${labels.tenant}/${labels.app}`;
    if (!apps.has(id)) apps.set(id, new Map());
    const versions = apps.get(id);
    if (!versions.has(labels.version)) {
      versions.set(labels.version, { requests: 0, errors: 0, cold: 0, buckets: [] });
    }
    const v = versions.get(labels.version);
    if (name === "dwcp_requests_total") {
      v.requests += value;
      if (labels.class === "5xx") v.errors += value;
    } else if (name === "dwcp_instantiate_seconds_count") {
      v.cold = value;
    } else if (name === "dwcp_request_duration_seconds_bucket") {
      v.buckets.push([labels.le === "+Inf" ? Infinity : Number(labels.le), value]);
    }
  }
  for (const versions of apps.values()) {
    const all = { requests: 0, errors: 0, cold: 0, buckets: [] };
    for (const v of versions.values()) {
      v.buckets.sort((a, b) => a[0] - b[0]);
      all.requests += v.requests;
      all.errors += v.errors;
      all.cold += v.cold;
      // Every version has the same bucket bounds.
      v.buckets.forEach(([le, n], i) => {
        if (all.buckets[i]) all.buckets[i][1] += n;
        else all.buckets[i] = [le, n];
      });
    }
    versions.set(ALL, all);
  }
  return { apps, live };
}

/** The q-quantile (in ms) of the requests between two cumulative
 *  histograms, interpolated within its bucket; null without requests. */
function quantile(before, after, q) {
  const counts = after.map(([le, n], i) => [le, n - (before[i] ? before[i][1] : 0)]);
  const total = counts.length ? counts[counts.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, n] of counts) {
    if (n >= rank) {
      // Past the last finite bound all we know is "above it".
      if (!Number.isFinite(le)) return lower * 1000;
      const share = n > below ? (rank - below) / (n - below) : 1;
      return (lower + (le - lower) * share) * 1000;
    }
    lower = le;
    below = n;
  }
  return null;
}

/** Per-version points from this poll's counters against those of about
 *  WINDOW_S ago (a restarted node's smaller counters start afresh). */
function recordVersions(t, prom) {
  for (const [id, versions] of prom.apps) {
    for (const [version, now] of versions) {
      const key = `${id}@${version}`;
      const kept = (counters.get(key) || []).filter(
        (s) => s.t >= t - WINDOW_S * 1000 - POLL_MS && s.requests <= now.requests,
      );
      kept.push({ t, ...now });
      counters.set(key, kept);
      const first = kept[0];
      const seconds = (t - first.t) / 1000;
      if (seconds < 1) continue;
      const requests = now.requests - first.requests;
      push(id, "rps", version, t, requests / seconds);
      push(id, "err", version, t, requests > 0 ? ((now.errors - first.errors) / requests) * 100 : null);
      push(id, "cold", version, t, Math.max(0, now.cold - first.cold) / seconds);
      push(id, "p50", version, t, quantile(first.buckets, now.buckets, 0.5));
      push(id, "p99", version, t, quantile(first.buckets, now.buckets, 0.99));
    }
  }
}

/** The app's latest point of `metric` (its totals), if recent. */
function latest(id, metric) {
  const points = (charts.get(id) && charts.get(id).get(metric) && charts.get(id).get(metric).get(ALL)) || [];
  const last = points[points.length - 1];
  return last && last[0] > Date.now() - 2 * POLL_MS ? last[1] : null;
}

// ------------------------------------------------------------------ polling

let polls = 0;
let timer = null;
let busy = false;

async function refresh() {
  const slow = polls++ % SLOW_EVERY === 0;
  const t = Date.now();
  const [ok, ready, apps, metrics] = await Promise.all([
    up("/healthz"),
    up("/readyz"),
    api("/v1/apps"),
    maybe("/metrics"),
  ]);
  view.health = { ok, ready };
  view.apps = apps.map((a) => ({ ...a, id: `${a.tenant}/${a.app}` }));
  const ids = view.apps.map((a) => a.id);
  if (!ids.includes(view.selected)) view.selected = null;

  const perApp = await Promise.all(
    ids.map((id) =>
      Promise.all([maybe(`/v1/apps/${appPath(id)}`), maybe(`/v1/apps/${appPath(id)}/rollout`)]),
    ),
  );
  view.status = new Map(ids.map((id, i) => [id, perApp[i][0]]));
  view.rollout = new Map(ids.map((id, i) => [id, perApp[i][1]]));
  // By default the app with a rollout in progress, else the first.
  if (!view.selected) {
    view.selected = ids.find((id) => inProgress(view.rollout.get(id).value)) || ids[0] || null;
  }

  view.promError = metrics.error || null;
  view.prom = metrics.value ? parseMetrics(metrics.value) : null;
  if (view.prom) recordVersions(t, view.prom);

  view.detail = view.selected ? await appDetail(view.selected) : null;
  if (slow || !view.flags) await refreshNodeWide();
  render();
}

async function appDetail(id) {
  const base = `/v1/apps/${appPath(id)}`;
  const [versions, experiment] = await Promise.all([maybe(`${base}/versions`), maybe(`${base}/experiment`)]);
  // Only stateful versions carry a key count.
  const stateful = (versions.value || []).some((v) => "keys" in v);
  const snapshots = stateful ? await maybe(`${base}/snapshots`) : null;
  return { id, versions, experiment, snapshots };
}

async function refreshNodeWide() {
  const tenantList = await maybe("/v1/tenants");
  const tenants = new Set(view.apps.map((a) => a.tenant));
  for (const t of tenantList.value || []) tenants.add(t.name);
  const names = [...tenants].sort();
  const lists = await Promise.all(names.map((t) => maybe(`/v1/flags/${encodeURIComponent(t)}/flags`)));
  view.flags = names.map((tenant, i) => ({ tenant, ...lists[i] }));
  view.keys = await maybe("/v1/keys");
  view.nodes = await maybe("/v1/nodes");
}

async function poll() {
  if (busy) return;
  busy = true;
  clearTimeout(timer);
  try {
    await refresh();
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("#updated").classList.remove("error");
  } catch (e) {
    if (e instanceof Unauthorized) {
      busy = false;
      signOut(`The node refused the token: ${e.message}`);
      return;
    }
    $("#updated").textContent = `update failed: ${e.message}`;
    $("#updated").classList.add("error");
  }
  busy = false;
  if (token()) timer = setTimeout(poll, POLL_MS);
}

// -------------------------------------------------------------- formatting

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function table(target, head, rows, empty = "none") {
  const body = rows.length
    ? rows.map((r) => (r instanceof Node ? r : el("tr", {}, r.map((c) => el("td", {}, c)))))
    : [el("tr", {}, el("td", { colspan: String(head.length), class: "muted" }, empty))];
  target.replaceChildren(el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), el("tbody", {}, body));
}

const num = (x, digits = 1) => (x == null || !Number.isFinite(x) ? "–" : x.toFixed(digits));
const percent = (x) => `${Number(x.toFixed(2))}%`;
const clock = (unix) => (unix ? new Date(unix * 1000).toLocaleTimeString() : "–");
const date = (unix) => (unix ? new Date(unix * 1000).toISOString().slice(0, 16).replace("T", " ") : "–");

/** Seconds as the CLI writes them: `90s`, `10m`, `1h`. */
function duration(secs) {
  if (secs % 3600 === 0) return `${secs / 3600}h`;
  if (secs % 60 === 0) return `${secs / 60}m`;
  return `${secs}s`;
}

function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`;
}

function inProgress(status) {
  const phase = status && status.rollout && status.rollout.phase.phase;
  return phase === "running" || phase === "paused" || phase === "warming";
}

function phaseText(r) {
  const p = r.phase;
  const steps = r.strategy.kind === "canary" ? r.strategy.steps.length : 0;
  if (p.phase === "running") return `running, step ${p.step + 1} of ${steps}`;
  if (p.phase === "paused") return `paused at step ${p.step + 1} of ${steps}`;
  return p.phase;
}

// ---------------------------------------------------------------- rendering

function render() {
  renderNode();
  renderApps();
  renderDetail();
  renderFlags();
  renderKeys();
}

function renderNode() {
  const { ok, ready } = view.health;
  const rps = view.apps.reduce((s, a) => s + (latest(a.id, "rps") || 0), 0);
  const inFlight = [...view.status.values()].reduce((s, st) => s + ((st.value && st.value.in_flight) || 0), 0);
  const live = view.prom && view.prom.live != null ? `${view.prom.live} live instances · ` : "";
  const health = ok ? (ready ? "ok, ready" : "ok, loading apps") : "not answering";
  // The members as this node sees them (itself alone without --cluster);
  // other members are alive by definition: the cluster drops silent ones.
  const members = (view.nodes && view.nodes.value && view.nodes.value.nodes) || [];
  const me = members.find((n) => n.self);
  const rows = [
    [
      `${me ? me.node : location.host} (this node, ${location.host})`,
      me ? me.region : "–",
      el("span", { class: ok && ready ? "badge good" : "badge bad" }, health),
      `${live}${num(rps)} req/s · ${inFlight} in flight`,
      String(view.apps.length),
    ],
  ];
  for (const n of members.filter((n) => !n.self)) {
    rows.push([
      `${n.node} (${n.http})`,
      n.region,
      el("span", { class: n.admission === "active" ? "badge good" : "badge" }, `alive, ${n.admission}`),
      "–",
      "–",
    ]);
  }
  table($("#nodes"), ["Node", "Region", "Health", "Load", "Apps"], rows);
}

function limitsText(l) {
  return `${bytes(l.memory_bytes)} · ${l.deadline_ms} ms · ${l.concurrency} at once · reuse ${l.reuse}`;
}

function stateText(app, status) {
  if (!status) return app.serving ? "serving" : "not serving";
  const parts = [status.serving ? "serving" : "not serving"];
  if (status.split) {
    const what = status.split.kind === "rollout" ? "rolling out" : "experiment:";
    parts.push(`${what} ${status.split.version} at ${percent(status.split.percent)}`);
  }
  return parts.join(", ");
}

function renderApps() {
  const rows = view.apps.map((a) => {
    const status = view.status.get(a.id).value;
    const tr = el(
      "tr",
      { class: a.id === view.selected ? "selectable selected" : "selectable", dataset: { app: a.id } },
      [
        el("td", {}, el("a", { href: `#${a.id}` }, a.id)),
        el("td", {}, a.active_version),
        el("td", {}, String(a.versions)),
        // One node: an app is on it or nowhere.
        el("td", {}, a.serving ? "1 (this node)" : "0"),
        el("td", {}, status ? limitsText(status.limits) : "–"),
        el("td", {}, stateText(a, status)),
        el("td", { class: "num" }, num(latest(a.id, "rps"))),
        el("td", { class: "num" }, num(latest(a.id, "p99"), 2)),
      ],
    );
    return tr;
  });
  table(
    $("#apps"),
    ["App", "Active", "Versions", "Replicas", "Limits (memory · deadline · concurrency · reuse)", "State", "Req/s", "p99 ms"],
    rows,
    "no apps yet (`dwcp deploy TENANT/APP FILE.wasm`)",
  );
}

function renderDetail() {
  const id = view.selected;
  $("#app-detail").hidden = !id;
  if (!id) return;
  $("#app-title").textContent = id;
  const status = view.status.get(id);
  if (status.value) {
    const s = status.value;
    $("#app-summary").textContent =
      `Host ${s.host} · active ${s.active_version} · ${s.versions} versions · ${s.in_flight} in flight now · deployed ${date(s.deployed_at)}`;
  } else {
    $("#app-summary").textContent = status.error;
  }
  renderCharts(id);
  renderRollout(id);
  const d = view.detail && view.detail.id === id ? view.detail : null;
  if (d) {
    renderExperiment(d.experiment);
    renderVersions(d.versions);
    renderSnapshots(d.snapshots);
  }
}

// ------------------------------------------------------------------- charts

const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#db2777", "#0891b2"];
const ALL_COLOR = "#6b7280";

/** Versions colored by role: stable blue, the one rolling out orange. */
function versionColors(id) {
  const colors = new Map();
  const r = view.rollout.get(id);
  if (r && r.value) {
    colors.set(r.value.stable, PALETTE[0]);
    if (r.value.rollout) colors.set(r.value.rollout.version, PALETTE[1]);
  }
  return colors;
}

function renderCharts(id) {
  $("#charts-error").textContent = view.promError ? `No charts: ${view.promError}` : "";
  const metrics = charts.get(id) || new Map();
  const labels = (metric) => metrics.get(metric) || new Map();
  const now = Date.now();
  // Versions with traffic on the charts; one line each only when two or
  // more share the window (a rollout, an experiment, the hand-over).
  const busyVersions = [...labels("rps").entries()]
    .filter(([label, points]) => label !== ALL && points.some(([, v]) => v > 0))
    .map(([label]) => label)
    .sort();
  const split = busyVersions.length > 1;
  const colors = versionColors(id);
  busyVersions.forEach((v, i) => colors.has(v) || colors.set(v, PALETTE[(i + 2) % PALETTE.length]));
  const lines = (metric, suffix = "", dashed = false) =>
    split
      ? busyVersions.map((v) => ({ label: v + suffix, color: colors.get(v), dashed, points: labels(metric).get(v) || [] }))
      : [{ label: "all" + suffix, color: PALETTE[0], dashed, points: labels(metric).get(ALL) || [] }];
  const rps = lines("rps");
  if (split) rps.unshift({ label: "all", color: ALL_COLOR, points: labels("rps").get(ALL) || [] });
  drawChart($("#chart-rps"), rps, now);
  drawChart($("#chart-latency"), [...lines("p50", " p50"), ...lines("p99", " p99", true)], now);
  drawChart($("#chart-errors"), lines("err"), now);
  drawChart($("#chart-cold"), lines("cold"), now);
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text = null) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text != null) e.textContent = text;
  return e;
}

/** 1, 2, 2.5 or 5 times a power of ten, at least `v`. */
function niceCeiling(v) {
  if (!(v > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= v) return m * power;
  return 10 * power;
}

function tickText(v) {
  if (v === 0) return "0";
  if (v >= 1000) return `${v / 1000}k`;
  return String(Number(v.toPrecision(3)));
}

/** A line chart of the last KEEP_MS, a line per series, gaps where a
 *  series has no value (no requests, no latency). */
function drawChart(target, lines, now) {
  const W = 480;
  const H = 170;
  const left = 40;
  const right = 8;
  const top = 22;
  const bottom = 18;
  const values = lines.flatMap((l) => l.points.map(([, v]) => v)).filter((v) => v != null && Number.isFinite(v));
  const max = niceCeiling(Math.max(0, ...values));
  const x = (t) => left + (W - left - right) * (1 - (now - t) / KEEP_MS);
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img" });
  for (const v of [0, max / 2, max]) {
    root.append(svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" }, tickText(v)));
  }
  for (let m = 5; m >= 0; m -= 1) {
    const label = m === 0 ? "now" : `-${m}m`;
    const anchor = m === 0 ? "end" : "middle";
    root.append(svg("text", { x: x(now - m * 60000), y: H - 4, "text-anchor": anchor, class: "tick" }, label));
  }
  let legendX = left;
  for (const line of lines) {
    let d = "";
    let pen = "M";
    for (const [t, v] of line.points) {
      if (v == null || !Number.isFinite(v) || t < now - KEEP_MS) {
        pen = "M";
        continue;
      }
      d += `${pen}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = "L";
    }
    if (d) {
      const attrs = { d, fill: "none", stroke: line.color, "stroke-width": 1.6 };
      if (line.dashed) attrs["stroke-dasharray"] = "4 3";
      root.append(svg("path", attrs));
    }
    const key = { x1: legendX, x2: legendX + 14, y1: 11, y2: 11, stroke: line.color, "stroke-width": 3 };
    if (line.dashed) key["stroke-dasharray"] = "4 3";
    root.append(svg("line", key));
    root.append(svg("text", { x: legendX + 18, y: 15, class: "legend" }, line.label));
    legendX += 28 + line.label.length * 7;
  }
  if (!values.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick" }, "no requests yet"));
  }
  target.replaceChildren(root);
}

// ------------------------------------------------------------------ rollout

function renderRollout(id) {
  const answer = view.rollout.get(id);
  const s = answer.value;
  const r = s && s.rollout;
  const buttons = document.querySelectorAll("#rollout .actions button");
  if (!s) {
    $("#rollout-summary").textContent = answer.error;
    buttons.forEach((b) => (b.disabled = true));
    return;
  }
  const phase = r ? r.phase.phase : null;
  const running = inProgress(s);
  const allowed = {
    promote: phase === "running" || phase === "paused",
    pause: phase === "running",
    resume: phase === "paused",
    abort: running,
    undo: running || s.previous != null,
  };
  buttons.forEach((b) => (b.disabled = !allowed[b.dataset.action]));

  const previous = s.previous ? ` · previous ${s.previous} (kept warm for undo)` : "";
  if (!r) {
    $("#rollout-summary").textContent = `No rollout yet: ${s.stable} serves everyone${previous}.`;
    $("#rollout-weight").textContent = "–";
    $("#rollout-phase").textContent = "";
    $("#rollout-bar").style.width = "0%";
    $("#rollout-steps").replaceChildren();
    $("#rollout-live").replaceChildren();
    $("#rollout-decisions").replaceChildren();
    return;
  }
  const strategy =
    r.strategy.kind === "canary"
      ? `canary, at least ${duration(r.strategy.step_secs)} a step`
      : r.strategy.kind;
  $("#rollout-summary").textContent =
    `${r.version} against ${r.baseline} · ${strategy} · started ${clock(r.started_at)} · stable ${s.stable}${previous}`;
  $("#rollout-weight").textContent = percent(r.weight_percent);
  const phaseBadge = $("#rollout-phase");
  phaseBadge.textContent = phaseText(r);
  phaseBadge.className = `badge ${phase === "aborted" ? "bad" : phase === "promoted" ? "good" : ""}`;
  $("#rollout-bar").style.width = `${Math.min(100, r.weight_percent)}%`;

  const steps = r.strategy.kind === "canary" ? r.strategy.steps : [];
  const current = r.phase.step;
  $("#rollout-steps").replaceChildren(
    ...steps.map((bp, i) =>
      el("li", { class: i < current || phase === "promoted" ? "done" : i === current && running ? "current" : "" }, percent(bp / 100)),
    ),
  );

  const arms = r.live
    ? [
        [r.baseline, "stable", r.live.stable],
        [r.version, "new", r.live.canary],
      ].map(([version, role, a]) => [
        version,
        role,
        String(a.requests),
        String(a.errors),
        a.requests ? `${num((a.errors / a.requests) * 100, 2)}%` : "–",
        a.requests ? num(a.latency_ms, 3) : "–",
      ])
    : [];
  table(
    $("#rollout-live"),
    ["Version", "Role", "Requests", "Errors", "Error rate", "Latency ms (geometric mean)"],
    arms,
    "the rollout has ended",
  );

  const decisions = [...r.decisions].reverse().map((d) => [
    clock(d.at),
    d.action.replace("_", " "),
    percent(d.weight_bp / 100),
    d.reason,
    d.readings.length ? el("ul", { class: "readings" }, d.readings.map(readingItem)) : "–",
  ]);
  table($("#rollout-decisions"), ["Time", "Action", "Weight", "Why", "The analysis's numbers"], decisions);
}

function readingItem(m) {
  const show = (v) => (m.metric === "error_rate" ? `${num(v * 100, 2)}%` : `${num(v, 3)} ms`);
  return el(
    "li",
    { class: m.worse ? "error" : "" },
    `${m.metric.replace("_", " ")}: stable ${show(m.stable)}, new ${show(m.canary)}, ` +
      `p = ${m.p_value.toPrecision(3)} (α ${m.alpha})${m.worse ? ", worse" : ""}`,
  );
}

const VERBS = {
  promote: ["Promote", "send every user to"],
  pause: ["Pause", "hold the weight of"],
  resume: ["Resume", "carry on rolling out"],
  abort: ["Abort", "send every user back from"],
  undo: ["Undo", "put the previous version back instead of"],
};

async function command(action) {
  const id = view.selected;
  const s = view.rollout.get(id) && view.rollout.get(id).value;
  if (!s) return;
  const version = s.rollout && inProgress(s) ? s.rollout.version : s.stable;
  const [verb, what] = VERBS[action];
  if (!confirm(`${verb} on ${id}: ${what} ${version}?`)) return;
  const result = $("#action-result");
  result.className = "";
  result.textContent = `${verb}…`;
  try {
    const after = await api(`/v1/apps/${appPath(id)}/rollout/${action}`, "POST");
    const r = after.rollout;
    const where = r ? `${r.version} ${phaseText(r)} at ${percent(r.weight_percent)}` : "";
    result.textContent = `${verb}: done. Stable ${after.stable}${where ? `; ${where}` : ""}.`;
    result.className = "good";
  } catch (e) {
    if (e instanceof Unauthorized) return signOut(`The node refused the token: ${e.message}`);
    result.textContent = `${verb} failed: ${e.message}`;
    result.className = "error";
  }
  poll();
}

// ------------------------------------------------------- experiment, state

function renderExperiment(answer) {
  const target = $("#experiment");
  if (!answer.value) {
    target.replaceChildren(el("p", { class: "muted" }, answer.status === 404 ? "No experiment." : answer.error));
    return;
  }
  const x = answer.value;
  const res = x.results;
  const subject = x.flag ? `flag ${x.flag}: ${x.control} against ${x.treatment}` : `${x.control} against ${x.treatment}`;
  const when = x.running ? `running since ${clock(x.started_at)}` : `stopped ${clock(x.stopped_at)}`;
  const t = el("table");
  const variant = (name, v) => [name, String(v.exposures), String(v.conversions), `${num(v.rate * 100, 2)}%`];
  table(t, ["Variant", "Users", "Conversions", "Rate"], [variant(`${x.control} (control)`, res.control), variant(`${x.treatment} (treatment)`, res.treatment)]);
  const lift = res.relative_lift == null ? "" : ` (${num(res.relative_lift * 100, 1)}% relative)`;
  target.replaceChildren(
    el("p", {}, `${subject} · ${percent(x.split_percent)} to the treatment · ${when}`),
    t,
    el(
      "p",
      {},
      `Effect ${num(res.effect * 100, 2)} points${lift}, interval [${num(res.interval.lower * 100, 2)}, ${num(res.interval.upper * 100, 2)}], ` +
        `p = ${res.p_value.toPrecision(3)} · verdict `,
      el("strong", {}, res.verdict.replaceAll("_", " ")),
      res.srm.mismatch ? el("span", { class: "error" }, " · sample ratio mismatch: do not trust these numbers") : "",
    ),
  );
}

function renderVersions(answer) {
  if (!answer.value) return table($("#versions"), ["Error"], [[answer.error]]);
  const stateful = answer.value.some((v) => "keys" in v);
  const head = ["Version", "Deployed", "Size", "SHA-256", "Signed by", "Serving", "Pre-init"];
  if (stateful) head.push("Keys");
  const rows = [...answer.value].reverse().map((v) => {
    const row = [v.version, date(v.deployed_at), bytes(v.size), v.sha256.slice(0, 12), v.signed_by || "–", v.active ? "active" : "", v.preinit || ""];
    if (stateful) row.push(String(v.keys ?? 0));
    return row;
  });
  table($("#versions"), head, rows);
}

function renderSnapshots(answer) {
  const target = $("#snapshots");
  if (!answer) {
    target.replaceChildren(el("p", { class: "muted" }, "Not a stateful app."));
    return;
  }
  if (!answer.value) {
    target.replaceChildren(el("p", { class: "error" }, answer.error));
    return;
  }
  // The newest checkpoint of each key says where it stands: one taken to
  // hibernate means the key's instance is freed until its next request.
  const latest = new Map();
  for (const c of answer.value) {
    const seen = latest.get(c.key);
    if (!seen || c.seq > seen.seq) latest.set(c.key, c);
  }
  const keys = [...latest.values()].sort((a, b) => a.key.localeCompare(b.key));
  const hibernated = keys.filter((c) => c.reason === "hibernate").length;
  const t = el("table");
  table(
    t,
    ["Key", "State", "Latest checkpoint", "Version", "Size", "Memory", "Taken", "Why"],
    keys.map((c) => [
      c.key,
      c.reason === "hibernate" ? "hibernated" : "live or idle",
      `#${c.seq}${c.base == null ? " (full)" : ` (delta of #${c.base})`}`,
      c.version,
      bytes(c.bytes),
      bytes(c.memory_bytes),
      date(c.taken_at),
      c.reason,
    ]),
    "no checkpoints yet",
  );
  target.replaceChildren(el("p", {}, `${keys.length} keys with state, ${hibernated} hibernated, ${answer.value.length} checkpoints kept`), t);
}

function renderFlags() {
  const target = $("#flags");
  if (!view.flags) return;
  const rows = [];
  const refused = [];
  for (const t of view.flags) {
    if (!t.value) {
      refused.push(`${t.tenant}: ${t.error}`);
      continue;
    }
    for (const f of t.value) {
      const variants = Object.entries(f.variants || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
      rows.push([t.tenant, f.key, f.state, f.default_variant || "–", variants, f.targeting ? "rules" : "–"]);
    }
  }
  const t = el("table");
  table(t, ["Tenant", "Flag", "State", "Default", "Variants", "Targeting"], rows, "no flags (`dwcp flags create KEY`)");
  target.replaceChildren(t, ...refused.map((r) => el("p", { class: "muted" }, r)));
  const note = el("p", { class: "muted" }, "Experiments on a flag show with their app, above.");
  target.append(note);
}

const DAY = 86400;

function renderKeys() {
  const target = $("#keys");
  if (!view.keys) return;
  if (!view.keys.value) {
    target.replaceChildren(el("p", { class: "muted" }, view.keys.error));
    return;
  }
  const m = view.keys.value;
  const now = Date.now() / 1000;
  const expiry = (k) => {
    if (k.not_after == null) return el("span", { class: "muted" }, "no expiry");
    const days = Math.floor((k.not_after - now) / DAY);
    const text = days < 0 ? `${date(k.not_after)} (expired)` : `${date(k.not_after)} (in ${days} days)`;
    return el("span", { class: days < 30 ? "error" : "" }, text);
  };
  const t = el("table");
  table(
    t,
    ["Key id", "Role", "Name", "Algorithm", "Valid from", "Expires", "Status"],
    m.keys.map((k) => [k.key_id, k.role, k.name, k.algorithm, date(k.not_before), expiry(k), k.status.replaceAll("_", " ")]),
  );
  target.replaceChildren(
    el("p", {}, `Trust manifest #${m.serial}, issued ${date(m.issued_at)} by root ${m.root_key_id} (${m.root_algorithm})`),
    t,
  );
}

// ------------------------------------------------------------- the token

function signIn(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
  $("#login").hidden = true;
  $("#dashboard").hidden = false;
  $("#sign-out").hidden = false;
  polls = 0;
  poll();
}

function signOut(reason = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(timer);
  $("#dashboard").hidden = true;
  $("#sign-out").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = reason;
  $("#token").value = "";
  $("#token").focus();
}

function start() {
  $("#node-address").textContent = location.host;
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token").value.trim();
    if (value) signIn(value);
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#apps").addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-app]");
    if (!row) return;
    event.preventDefault();
    view.selected = row.dataset.app;
    history.replaceState(null, "", `#${row.dataset.app}`);
    poll();
  });
  for (const b of document.querySelectorAll("#rollout .actions button")) {
    b.addEventListener("click", () => command(b.dataset.action));
  }
  if (token()) signIn(token());
  else signOut();
}

start();
