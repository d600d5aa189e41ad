// The operator's page: login, the live view (server-sent events), commands, recipes, lots.
// Everything a person reads or presses has a data-testid (CONTRACT section 7). Text from the
// booth goes in with textContent only.
"use strict";

const $ = id => document.getElementById(id);
const C = window.BoothCharts;

// The buttons of the commands panel, in order, with their label and whether they ask first.
const BUTTONS = [
  ["set_mode", "Mode"], ["reset", "Reset"], ["start_job", "Start job"], ["hold", "Hold"],
  ["unhold", "Unhold"], ["stop", "Stop", "Stop the booth?"], ["abort", "Abort", "Abort: parts out at once, the job ends. Abort?"],
  ["clear", "Clear"], ["ack_alarm", "Ack all alarms"], ["refresh", "Solder/flux refreshed"],
  ["get_status", "Status"],
];
const READINGS = [
  ["solder_temp_c", "Solder temperature", "C", "solder_setpoint_c"],
  ["solder_setpoint_c", "Setpoint", "C"],
  ["heater_output_pct", "Heater output", "%"],
  ["o2_ppm", "O2", "ppm"],
  ["n2_flow_lpm", "N2 flow", "l/min"],
  ["holder_z_mm", "Holder position", "mm"],
  ["vacuum_kpa", "Vacuum", "kPa"],
];
const EXTRA_READINGS = [
  ["holder_station", "Holder station", ""], ["flux_level_pct", "Flux level", "%"],
  ["door_closed", "Door closed", ""], ["estop_ok", "E-stop clear", ""],
];
const WHY = {
  door_closed: "the door is closed", estop_clear: "no e-stop pressed", exhaust_ok: "exhaust runs",
  n2_supply_ok: "N2 supply pressure", io_ok: "I/O module answering, watchdog not tripped",
  holder_ok: "holder drive answering, no fault", heaters_ok: "every heater controller healthy",
  high_limit_ok: "high-limit thermostat not tripped", part_held: "the part is held",
  flux_level_ok: "flux level above its minimum", flux_done: "this unit was fluxed",
  o2_ok: "O2 under the limit, fresh and stable", solder_temp_ok: "solder within its band",
  heartbeats_ok: "every device's own timeout fed by a heartbeat that landed",
};
const STEPS = ["load_move", "grip", "flux_move", "flux_wait", "flux_approach", "flux_enter",
  "flux_dwell", "flux_up", "dip_move", "dip_wait", "dip_approach", "dip_enter", "dip_dwell",
  "dip_up", "drain", "reject_up", "unload_move", "cool", "release", "done"];

const app = {
  me: null, allowed: new Set(), status: null, telemetry: null, trend: [], events: [],
  source: null, pending: null, recipe: null,
};

// ---------------------------------------------------------------- HTTP

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && app.me) headers["X-CSRF-Token"] = app.me.csrf;
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401 && path !== "/api/login") { showLogin(); }
  return { status: resp.status, data };
}

function replyText(reply) {
  if (!reply) return "no reply";
  if (reply.ok) return `${reply.command}: ok` + (reply.result && reply.result.mode ? ` (${reply.result.mode})` : "");
  const e = reply.error || {};
  return `${reply.command || ""}: ${e.code}: ${e.message}`;
}

function showReply(el, reply) {
  el.textContent = replyText(reply);
  el.className = "reply " + (reply && reply.ok ? "ok" : "bad");
  el.dataset.ok = String(!!(reply && reply.ok));
  el.dataset.code = reply && reply.error ? reply.error.code : "";
}

async function command(name, args, replyEl) {
  const r = await api("POST", `/api/cmd/${name}`, args || {});
  showReply(replyEl || $("cmd-reply"), r.data);
  return r.data;
}

// ---------------------------------------------------------------- login

function showLogin(message) {
  if (app.source) { app.source.close(); app.source = null; }
  app.me = null;
  $("main-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
  $("login-username").focus();
}

async function start() {
  const r = await api("GET", "/api/me");
  if (r.status !== 200) { showLogin(); return; }
  enter(r.data);
}

function enter(me) {
  app.me = me;
  app.allowed = new Set(me.allowed);
  $("login-view").hidden = true;
  $("main-view").hidden = false;
  $("user").textContent = `${me.user} (${me.role})`;
  drawButtons();
  connect();
  loadRecipes();
}

$("login-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const r = await api("POST", "/api/login", {
    username: $("login-username").value, password: $("login-password").value,
  });
  $("login-password").value = "";
  if (r.status === 200) enter(r.data);
  else $("login-error").textContent = (r.data && r.data.error && r.data.error.message) || `login failed (${r.status})`;
});

$("logout").addEventListener("click", async () => {
  await api("POST", "/api/logout", {});
  showLogin("logged out");
});

// ---------------------------------------------------------------- live stream

function connect() {
  if (app.source) app.source.close();
  const src = new EventSource("/api/stream");
  app.source = src;
  src.addEventListener("open", () => { $("link").textContent = "live"; $("link").className = "link up"; });
  src.addEventListener("error", async () => {
    $("link").textContent = "offline"; $("link").className = "link down";
    const r = await fetch("/api/me", { credentials: "same-origin" });
    if (r.status === 401) showLogin("session ended");
  });
  src.addEventListener("snapshot", ev => {
    const s = JSON.parse(ev.data);
    app.trend = s.trend || [];
    app.events = [];
    if (s.telemetry) onTelemetry(s.telemetry);
    onEvents(s.events || []);
    if (s.status) onStatus(s.status);
    drawTrends();
  });
  src.addEventListener("status", ev => onStatus(JSON.parse(ev.data)));
  src.addEventListener("telemetry", ev => {
    const m = JSON.parse(ev.data);
    app.trend.push(m.point);
    const spanS = trendSpanS();
    while (app.trend.length && app.trend[0].ts < m.point.ts - spanS) app.trend.shift();
    onTelemetry(m.telemetry);
    drawTrends();
  });
  src.addEventListener("events", ev => onEvents(JSON.parse(ev.data)));
  src.addEventListener("allowed", ev => { app.allowed = new Set(JSON.parse(ev.data)); markButtons(); });
}

function trendSpanS() {
  const t = app.trend;
  return Math.max(60, t.length > 1 ? t[t.length - 1].ts - t[0].ts : 60);
}

// ---------------------------------------------------------------- status

function onStatus(s) {
  if (!s) return;
  app.status = s;
  const st = $("state");
  st.textContent = s.state;
  st.className = `state s-${s.state}`;
  const mode = $("mode");
  mode.textContent = s.mode;
  mode.className = `mode ${s.mode}`;
  $("ready").textContent = s.ready ? "yes" : "no";
  drawPermissives(s.interlocks || {});
  drawAlarms(s.alarms || []);
  drawJob(s.job);
  const b = document.querySelector('[data-testid="cmd-set_mode"]');
  if (b) b.textContent = s.mode === "local" ? "Switch to remote" : "Switch to local";
}

function drawPermissives(perms) {
  const ul = $("permissives");
  const names = Object.keys(perms).sort();
  ul.textContent = "";
  for (const name of names) {
    const li = document.createElement("li");
    li.className = "lamp";
    li.dataset.testid = `permissive-${name}`;
    li.setAttribute("data-testid", `permissive-${name}`);
    li.dataset.ok = String(!!perms[name]);
    li.textContent = name;
    li.title = (perms[name] ? "met: " : "NOT met: ") + (WHY[name] || name);
    ul.appendChild(li);
  }
}

function ago(ts) {
  if (!ts) return "";
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 90 ? `${s.toFixed(0)} s ago` : s < 5400 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}

function drawAlarms(alarms) {
  const ul = $("alarms");
  ul.textContent = "";
  if (!alarms.length) {
    const li = document.createElement("li"); li.className = "muted"; li.textContent = "none";
    ul.appendChild(li); return;
  }
  for (const a of alarms) {
    const li = document.createElement("li");
    li.className = `alarm sev-${a.severity}`;
    li.setAttribute("data-testid", `alarm-${a.id}`);
    li.dataset.acked = String(!!a.acked);
    const sev = document.createElement("span"); sev.className = "sev"; sev.textContent = a.severity;
    const code = document.createElement("b"); code.textContent = a.code;
    const since = document.createElement("span"); since.className = "muted";
    since.textContent = a.since ? `since ${new Date(a.since * 1000).toLocaleTimeString()} (${ago(a.since)})` : "";
    const ack = document.createElement("span"); ack.className = "muted"; ack.textContent = a.acked ? "acked" : "not acked";
    const text = document.createElement("span"); text.className = "text"; text.textContent = a.text;
    li.append(sev, code, since, ack);
    if (!a.acked && app.allowed.has("ack_alarm")) {
      const btn = document.createElement("button");
      btn.className = "small"; btn.textContent = "Ack";
      btn.setAttribute("data-testid", `ack-${a.id}`);
      btn.addEventListener("click", () => command("ack_alarm", { alarm_id: a.id }));
      li.appendChild(btn);
    }
    li.appendChild(text);
    ul.appendChild(li);
  }
}

function drawJob(job) {
  const el = $("job");
  const bar = $("job-progress");
  if (!job) { el.textContent = "no job"; bar.style.width = "0%"; bar.dataset.pct = "0"; return; }
  const done = (job.units_done || 0) + (job.units_rejected || 0);
  const stepIdx = Math.max(0, STEPS.indexOf(job.step));
  const frac = job.units ? Math.min(1, (done + (done < job.units ? stepIdx / (STEPS.length - 1) : 0)) / job.units) : 0;
  el.textContent = "";
  const lines = [
    `Lot ${job.lot_id}  ·  recipe ${job.recipe}`,
    `Unit ${job.unit ?? "-"} of ${job.units}  ·  done ${job.units_done}, rejected ${job.units_rejected}`,
    `Step ${job.step}`,
  ];
  for (const l of lines) { const d = document.createElement("div"); d.textContent = l; el.appendChild(d); }
  const pct = Math.round(frac * 100);
  bar.style.width = `${pct}%`;
  bar.dataset.pct = String(pct);
}

// ---------------------------------------------------------------- readings

function readingText(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v === "number") return String(v);
  return String(v);
}

function ensureReading(key, label, unit, chart) {
  let card = document.getElementById(`r-${key}`);
  if (card) return card;
  card = document.createElement("div");
  card.className = "reading"; card.id = `r-${key}`;
  const name = document.createElement("div"); name.className = "name"; name.textContent = label;
  const val = document.createElement("span"); val.className = "value";
  val.setAttribute("data-testid", `reading-${key}`); val.textContent = "-";
  const u = document.createElement("span"); u.className = "unit"; u.textContent = unit;
  const line = document.createElement("div"); line.append(val, u);
  card.append(name, line);
  if (chart) card.appendChild(C.svgEl("svg", { "data-testid": `trend-${key}` }));
  $("readings").appendChild(card);
  return card;
}

function onTelemetry(t) {
  app.telemetry = t;
  for (const [key, label, unit] of READINGS) ensureReading(key, label, unit, true);
  for (const [key, label, unit] of EXTRA_READINGS) ensureReading(key, label, unit, false);
  for (const [key, label, unit] of [...READINGS, ...EXTRA_READINGS]) {
    ensureReading(key, label, unit).querySelector(".value").textContent = readingText(t[key]);
  }
  const what = $("refresh-what");
  const vessels = Object.keys(t.vessels || {});
  if (what.options.length !== vessels.length + 1) {
    what.textContent = "";
    for (const v of [...vessels, "flux"]) { const o = document.createElement("option"); o.value = v; o.textContent = v; what.appendChild(o); }
  }
}

function drawTrends() {
  const spanS = trendSpanS();
  $("trend-span").textContent = `last ${Math.round(spanS / 60)} min`;
  for (const [key, , , second] of READINGS) {
    const svg = document.querySelector(`[data-testid="trend-${key}"]`);
    if (!svg) continue;
    C.drawTrend(svg, app.trend.map(p => ({ ts: p.ts, value: p[key], value2: second ? p[second] : null })), spanS);
  }
}

// ---------------------------------------------------------------- events

function eventText(e) {
  const skip = new Set(["seq", "type", "ts"]);
  const parts = Object.entries(e).filter(([k]) => !skip.has(k)).map(([k, v]) =>
    `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
  return `${new Date(e.ts * 1000).toLocaleTimeString()}  ${e.type}  ${parts.join(" ")}`;
}

function onEvents(list) {
  const ol = $("events");
  for (const e of list) {
    if (e.type === "host_message") {
      // A terminal message of the fab's host (SECS/GEM S10F3): shown until a newer one comes.
      $("host-message").textContent = `${new Date(e.ts * 1000).toLocaleTimeString()}  ${e.text}`;
      $("host-message-card").hidden = false;
    }
    const li = document.createElement("li");
    li.value = e.seq;
    li.setAttribute("data-testid", `event-${e.seq}`);
    li.textContent = eventText(e);
    ol.insertBefore(li, ol.firstChild);
  }
  while (ol.children.length > 50) ol.removeChild(ol.lastChild);
}

// ---------------------------------------------------------------- commands

function drawButtons() {
  const box = $("cmd-buttons");
  box.textContent = "";
  const byRole = new Set(app.me.by_role);
  for (const [name, label, confirmText] of BUTTONS) {
    if (!byRole.has(name)) continue;
    const b = document.createElement("button");
    b.setAttribute("data-testid", `cmd-${name}`);
    b.textContent = label;
    if (confirmText) b.dataset.danger = "1";
    b.addEventListener("click", () => pressed(name, confirmText));
    box.appendChild(b);
  }
  $("start-form").hidden = !byRole.has("start_job");
  $("refresh-form").hidden = !byRole.has("refresh");
  markButtons();
  if (app.status) onStatus(app.status);
}

function markButtons() {
  // Buttons the mode refuses now stay pressable (the reply says why) but look dimmed.
  for (const b of document.querySelectorAll('#cmd-buttons button')) {
    const name = b.getAttribute("data-testid").slice(4);
    b.classList.toggle("blocked", !app.allowed.has(name));
    b.title = app.allowed.has(name) ? "" : `not in ${app.status ? app.status.mode : "this"} mode`;
  }
  if (app.status) drawAlarms(app.status.alarms || []);
}

function argsOf(name) {
  switch (name) {
    case "set_mode": return { mode: app.status && app.status.mode === "local" ? "remote" : "local" };
    case "start_job": return { lot_id: $("job-lot").value.trim(), recipe: $("job-recipe").value, units: parseInt($("job-units").value, 10) };
    case "ack_alarm": return { alarm_id: "all" };
    case "refresh": return { what: $("refresh-what").value };
    default: return {};
  }
}

function pressed(name, confirmText) {
  const args = argsOf(name);
  if (!confirmText) { command(name, args); return; }
  app.pending = [name, args];
  $("confirm-text").textContent = confirmText;
  $("confirm-bar").hidden = false;
  $("cmd-reply").textContent = "";
}

$("confirm").addEventListener("click", () => {
  const p = app.pending; app.pending = null; $("confirm-bar").hidden = true;
  if (p) command(p[0], p[1]);
});
$("cancel").addEventListener("click", () => {
  app.pending = null; $("confirm-bar").hidden = true;
  $("cmd-reply").textContent = "cancelled"; $("cmd-reply").className = "reply";
});

// ---------------------------------------------------------------- tabs

for (const t of document.querySelectorAll(".tab")) {
  t.addEventListener("click", () => {
    for (const u of document.querySelectorAll(".tab")) u.classList.toggle("active", u === t);
    for (const name of ["operate", "recipes", "lots"]) $(`tab-${name}`).hidden = name !== t.dataset.tab;
    if (t.dataset.tab === "recipes") loadRecipes();
    if (t.dataset.tab === "lots") searchLots();
  });
}

// ---------------------------------------------------------------- recipes

async function loadRecipes() {
  const r = await api("GET", "/api/recipes");
  if (!r.data || !r.data.ok) return;
  const ul = $("recipe-list"), sel = $("job-recipe");
  const keep = sel.value;
  ul.textContent = ""; sel.textContent = "";
  for (const rec of r.data.result.recipes) {
    const li = document.createElement("li");
    li.setAttribute("data-testid", `recipe-${rec.name}`);
    li.textContent = `${rec.name}` + (rec.versions ? `  (v${rec.versions})` : "");
    li.addEventListener("click", () => viewRecipe(rec.name));
    ul.appendChild(li);
    const o = document.createElement("option"); o.value = rec.name; o.textContent = rec.name; sel.appendChild(o);
  }
  if (keep) sel.value = keep;
}

// A recipe as a flat list of fields: "dips.0.setpoint_c" -> value.
function flatten(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === "object") flatten(v, path, out);
    else out.push([path, v]);
  }
  return out;
}

function unflatten(fields, like) {
  const out = Array.isArray(like) ? [] : {};
  for (const [path, raw, orig] of fields) {
    const keys = path.split(".");
    let o = out, src = like;
    keys.forEach((k, i) => {
      const last = i === keys.length - 1;
      const nextSrc = src == null ? undefined : src[k];
      if (last) { o[k] = convert(raw, orig); return; }
      if (o[k] === undefined) o[k] = Array.isArray(nextSrc) ? [] : {};
      o = o[k]; src = nextSrc;
    });
  }
  return out;
}

function convert(raw, orig) {
  if (typeof orig === "number") { const n = Number(raw); return raw.trim() === "" || isNaN(n) ? raw : n; }
  if (typeof orig === "boolean") return raw === "true";
  return raw;
}

async function viewRecipe(name) {
  const r = await api("GET", `/api/recipes/${encodeURIComponent(name)}`);
  const reply = $("recipe-reply");
  if (!r.data || !r.data.ok) { showReply(reply, r.data); return; }
  app.recipe = r.data.result;
  for (const li of $("recipe-list").children) li.classList.toggle("sel", li.getAttribute("data-testid") === `recipe-${name}`);
  $("recipe-title").textContent = `Recipe ${name}  (${app.recipe.source}, ${app.recipe.hash.slice(0, 10)})`;
  const form = $("recipe-form");
  form.textContent = "";
  const canEdit = new Set(app.me.by_role).has("put_recipe");
  for (const [path, value] of flatten(app.recipe.recipe, "", [])) {
    const label = document.createElement("label");
    label.dataset.path = path;
    const cap = document.createElement("span"); cap.textContent = path;
    const input = document.createElement("input");
    input.value = String(value);
    input.dataset.orig = JSON.stringify(value);
    input.readOnly = !canEdit;
    input.setAttribute("data-testid", `field-${path}`);
    const err = document.createElement("span"); err.className = "field-error";
    err.setAttribute("data-testid", `field-error-${path}`);
    label.append(cap, input, err);
    form.appendChild(label);
  }
  const actions = $("recipe-actions");
  actions.textContent = "";
  if (canEdit) {
    const save = document.createElement("button");
    save.setAttribute("data-testid", "cmd-put_recipe");
    save.className = "primary"; save.textContent = "Save as new version";
    save.addEventListener("click", saveRecipe);
    actions.appendChild(save);
  }
  reply.textContent = "";
}

async function saveRecipe() {
  const form = $("recipe-form");
  const fields = [...form.querySelectorAll("label")].map(l => {
    const input = l.querySelector("input");
    return [l.dataset.path, input.value, JSON.parse(input.dataset.orig)];
  });
  const body = unflatten(fields, app.recipe.recipe);
  const reply = await command("put_recipe", { name: app.recipe.name, recipe: body }, $("recipe-reply"));
  for (const l of form.querySelectorAll("label")) { l.classList.remove("bad"); l.querySelector(".field-error").textContent = ""; }
  const problems = (reply && reply.error && reply.error.details && reply.error.details.problems) || [];
  for (const p of problems) {
    const i = p.indexOf(": ");
    const where = i > 0 ? p.slice(0, i).replace(/\[(\d+)\]/g, ".$1") : "";
    const labels = [...form.querySelectorAll("label")].filter(l => where && (l.dataset.path === where || l.dataset.path.startsWith(where + ".")));
    if (!labels.length) continue;
    labels[0].classList.add("bad");
    labels[0].querySelector(".field-error").textContent = i > 0 ? p.slice(i + 2) : p;
  }
  if (reply && reply.ok) loadRecipes();
}

// ---------------------------------------------------------------- lots

$("lot-search").addEventListener("submit", ev => { ev.preventDefault(); searchLots(); });

async function searchLots() {
  const q = $("lot-query").value.trim();
  const r = await api("GET", `/api/lots?q=${encodeURIComponent(q)}`);
  const ul = $("lot-list");
  ul.textContent = "";
  for (const lot of (r.data && r.data.lots) || []) {
    const li = document.createElement("li");
    li.setAttribute("data-testid", `lot-${lot.lot_id}`);
    li.textContent = `${lot.lot_id}  ${lot.recipe || ""}  ${lot.units} units  ${lot.outcome || lot.state}  (${lot.dips} dips)`;
    li.addEventListener("click", () => viewLot(lot.lot_id));
    ul.appendChild(li);
  }
}

async function viewLot(lot) {
  const r = await api("GET", `/api/lots/${encodeURIComponent(lot)}`);
  const detail = $("lot-detail");
  if (!r.data || !r.data.ok) { detail.textContent = replyText(r.data); return; }
  const job = r.data.result;
  $("lot-title").textContent = `Lot ${job.lot_id}`;
  detail.textContent = `recipe ${job.recipe}, ${job.units} units, ${job.outcome || job.state}` +
    (job.reason ? ` (${job.reason})` : "") + `, started ${job.started_at ? new Date(job.started_at * 1000).toLocaleString() : "-"}`;
  C.drawDips($("lot-chart"), job.dips || []);
  const csv = $("lot-csv");
  csv.href = `/api/lots/${encodeURIComponent(lot)}/csv`;
  csv.setAttribute("download", `lot-${lot}.csv`);
  csv.hidden = false;
  const table = $("lot-dips");
  table.textContent = "";
  const head = table.insertRow();
  for (const h of ["unit", "vessel", "O2 ppm", "solder C", "depth mm", "dwell s"]) {
    const th = document.createElement("th"); th.textContent = h; head.appendChild(th);
  }
  for (const d of job.dips || []) {
    const row = table.insertRow();
    for (const v of [d.unit, d.vessel, d.o2_ppm, d.solder_temp_c, d.depth_mm, d.dwell_s]) row.insertCell().textContent = v == null ? "-" : String(v);
  }
}

start();
