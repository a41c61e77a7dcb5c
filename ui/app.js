// HostPulse settings window. Talks to the backend only through our Tauri commands and the
// "status" event; the backend validates everything again and never returns the token.

const { invoke } = window.__TAURI__.core;
const { listen } = window.__TAURI__.event;

const $ = (id) => document.getElementById(id);
const FIELDS = [
  "stream_name", "buffer_span_ms", "topic", "format", "interval_ms", "battery_interval_ms", "portal_url",
  "workspace_id", "stream_id", "process_count", "network_interfaces", "tags", "high_cpu_percent", "high_cpu_seconds",
  "outbox_max_kb", "outbox_max_age_hours", "stall_timeout_ms", "log_level",
];
const CHECKS = ["tls_verify_hostname", "notify_high_cpu", "notify_stopped", "notify_token_rejected"];
const RANGES = {
  interval_ms: [100, 3600000, "ms"], buffer_span_ms: [1, 60000, "ms"],
  high_cpu_percent: [1, 100, "%"], high_cpu_seconds: [1, 86400, "s"], process_count: [1, 10, ""],
  outbox_max_kb: [10, 16777216, "KiB"], outbox_max_age_hours: [1, 8784, "hours"],
  stall_timeout_ms: [1000, 3600000, "ms"],
};
const HOUR_MS = 3600 * 1000;
let chart = null; // the last get_history answer
let chartAsked = 0;

// Text and visibility are set only when they change: setting the same text again still makes
// WebKit lay out and repaint the element, once a second for every figure on the page.
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function show(el, text) {
  setText(el, text ?? "");
  if (el.hidden !== !text) el.hidden = !text;
}

function fieldError(field, message) {
  const input = $(field);
  const el = $(`${field}-error`);
  if (!el) return;
  show(el, message);
  if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
  // An error in the closed Advanced section opens it, so the message is seen.
  if (message && input?.closest("details")) input.closest("details").open = true;
}

function clearErrors() {
  FIELDS.forEach((f) => fieldError(f, ""));
  fieldError("metrics", "");
  show($("settings-error"), "");
}

// The status in the backend's one vocabulary (state id and label, what the toggle does, the
// acknowledged / waiting / failed / dropped counts): nothing is re-derived here.
function renderStatus(s) {
  const pill = $("state");
  setText(pill, s.label);
  if (pill.className !== `pill ${s.state}`) pill.className = `pill ${s.state}`;
  setText($("cpu"), s.last_value == null ? "–" : `${s.last_value.toFixed(1)} %`);
  for (const f of ["acknowledged", "waiting", "failed", "dropped"]) setText($(f), String(s[f]));
  if ($("dropped-row").hidden !== (s.dropped === 0)) $("dropped-row").hidden = s.dropped === 0;
  let error = s.error ? `Last error: ${s.error}` : "";
  if (s.next_try_ms != null) {
    const next = new Date(s.next_try_ms).toLocaleTimeString();
    error += `\nSamples wait on this computer; next try at ${next}.`;
  }
  show($("last-error"), error);
  const toggle = $("toggle");
  if (toggle.disabled !== !s.can_toggle) toggle.disabled = !s.can_toggle;
  setText(toggle, s.toggle_label);
  show($("low-power"), s.low_power ? `On battery: low-power mode, one sample every ${formatMs(s.interval_ms)}.` : "");
}

// A status that brings a new sample brings a new chart: its history answer is fetched first and
// then the figures, the process list and the chart are set together, so the page is painted
// once per sample rather than once per message. Statuses are handled in order; one that fails
// to render is logged and the next is handled all the same.
let statusQueue = Promise.resolve();
function onStatus(s) {
  statusQueue = statusQueue.then(async () => {
    let fetched = false;
    if (s.samples !== onStatus.samples) {
      onStatus.samples = s.samples;
      if (Date.now() - chartAsked >= 900) fetched = await fetchHistory();
      else refreshHistory(); // faster than once a second: one trailing refresh
    }
    renderStatus(s);
    if (s.processes) renderProcesses(s.processes);
    if (fetched) renderChart();
  }).catch((err) => console.error("status update failed", err));
}

function formatMs(ms) {
  if (ms < 1000) return `${ms} ms`;
  return `${Number.isInteger(ms / 1000) ? ms / 1000 : (ms / 1000).toFixed(1)} s`;
}

// The top processes come with each status while the window is open (the backend reads the
// process table only then, and refreshes the list every 3 s); asked for once when the page
// loads. Rows are reused and only text that changed is set, so an unchanged list repaints nothing.
function renderProcesses(list) {
  const body = $("processes").tBodies[0];
  if (!list.length) {
    if (body.dataset.rows !== "0") body.replaceChildren(row(["Reading…"], ["muted"], 4));
    body.dataset.rows = "0";
    return;
  }
  if (body.dataset.rows !== String(list.length)) {
    body.replaceChildren(...list.map(() => row(["", "", "", ""], ["name", "num", "num", "num"])));
    body.dataset.rows = String(list.length);
  }
  list.forEach((p, i) => {
    const texts = [p.name, String(p.pid), formatValue(p.cpu, "%"), formatValue(p.memory, "B")];
    [...body.rows[i].cells].forEach((cell, k) => setText(cell, texts[k]));
    if (body.rows[i].cells[0].title !== p.name) body.rows[i].cells[0].title = p.name;
  });
}

function row(texts, classes, span) {
  const tr = document.createElement("tr");
  texts.forEach((text, k) => {
    const td = Object.assign(document.createElement("td"), { textContent: text, className: classes[k] });
    if (span) td.colSpan = span;
    tr.append(td);
  });
  return tr;
}

// Values with their unit, bytes in binary multiples.
function formatValue(v, unit) {
  if (v == null) return "–";
  if (unit === "B" || unit === "B/s") {
    const steps = ["", "Ki", "Mi", "Gi", "Ti"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < steps.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(i === 0 ? 0 : 1)} ${steps[i]}${unit}`;
  }
  if (unit === "%") return `${v.toFixed(1)} %`;
  const text = Math.abs(v) >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1);
  return unit ? `${text} ${unit}` : text;
}

// At most about once a second; a call in between is answered by one trailing refresh, so the
// chart never lags behind the value shown above it.
let chartTrailing = null;
async function refreshHistory() {
  const now = Date.now();
  if (now - chartAsked < 900) {
    chartTrailing ??= setTimeout(() => { chartTrailing = null; refreshHistory(); }, 900 - (now - chartAsked));
    return;
  }
  if (await fetchHistory()) renderChart();
}

// Only the latest request's answer is kept: an answer for the metric chosen before does not
// replace the one for the metric chosen now.
let historyAsked = 0;
async function fetchHistory() {
  chartAsked = Date.now();
  const asked = ++historyAsked;
  try {
    const answer = await invoke("get_history", { id: $("metric").value || null });
    if (asked !== historyAsked) return false;
    chart = answer;
    return true;
  } catch (err) {
    return false;
  }
}

// The figures under the chart come with its line, from the same history answer.
function renderChart() {
  const select = $("metric");
  const ids = chart.parameters.map((p) => p.id).join("\n");
  if (select.dataset.ids !== ids) {
    select.replaceChildren(...chart.parameters.map((p) => {
      const group = p.group === "/" ? "" : `${p.group.slice(1)} · `;
      return new Option(`${group}${p.name}${p.unit ? ` (${p.unit})` : ""}`, p.id);
    }));
    select.dataset.ids = ids;
    select.value = chart.series.id;
  }
  const unit = chart.parameters.find((p) => p.id === chart.series.id)?.unit ?? "";
  setText($("chart-now"), `Now ${formatValue(chart.series.current, unit)}`);
  setText($("chart-min"), `min ${formatValue(chart.series.min, unit)}`);
  setText($("chart-max"), `max ${formatValue(chart.series.max, unit)}`);
  drawChart();
}

// The last hour: one segment per pair of neighbouring samples, coloured by what became of the
// later one (sent, waiting in the outbox, not published); no line across a gap in sampling.
function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  // A new backing store only when the size changed; otherwise the old picture is cleared.
  const [bw, bh] = [Math.round(w * ratio), Math.round(h * ratio)];
  if (canvas.width !== bw || canvas.height !== bh) {
    canvas.width = bw;
    canvas.height = bh;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();
  const top = 14, bottom = h - 14;
  const series = chart?.series;
  const unit = chart?.parameters.find((p) => p.id === series?.id)?.unit ?? "";
  let lo = 0, hi = 100;
  if (unit !== "%" && series?.max != null) {
    lo = Math.min(0, series.min);
    // 10 % of headroom above the highest value, whatever its sign (−10 × 1.1 would be below it).
    hi = series.max > lo ? series.max + Math.max(series.max - lo, Math.abs(series.max)) * 0.1 : lo + 1;
  }
  // The last hour; while there is less history, the time since the first sample (at least
  // 20 s), so that the first seconds already draw a line across the chart.
  const now = Date.now();
  const first = series ? series.values.findIndex((v, i) => v != null && now - series.times_ms[i] <= HOUR_MS) : -1;
  const oldest = first >= 0 ? series.times_ms[first] : now;
  const span = Math.min(HOUR_MS, Math.max(20 * 1000, (now - oldest) * 1.05));
  const x = (t) => w - ((now - t) / span) * w;
  const y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
  ctx.strokeStyle = color("--line");
  ctx.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    const gy = top + f * (bottom - top);
    ctx.beginPath(); ctx.moveTo(0, gy); ctx.lineTo(w, gy); ctx.stroke();
  }
  ctx.fillStyle = color("--muted");
  ctx.font = "10px system-ui, sans-serif";
  ctx.textAlign = "left"; // the kept context still has the last draw's "right"
  ctx.textBaseline = "top";
  ctx.fillText(formatValue(hi, unit), 2, 1);
  ctx.textBaseline = "bottom";
  const minutes = Math.round(span / 60000);
  ctx.fillText(minutes >= 60 ? "1 hour ago" : span < 120000 ? `${Math.round(span / 1000)} s ago` : `${minutes} min ago`, 2, h);
  ctx.textAlign = "right";
  ctx.fillText("now", w - 2, h);
  if (!series || series.times_ms.length === 0) return;
  const gap = Math.max(3 * (chart.interval_ms || 1000), 2500);
  const style = {
    sent: [color("--accent"), []], waiting: [color("--warn"), [5, 3]], local: [color("--muted"), []],
  };
  ctx.lineWidth = 2;
  ctx.lineJoin = "round";
  // One path per run of segments in the same style (one stroke, not one per sample).
  let run = null;
  const flush = () => {
    if (!run) return;
    const [stroke, dash] = style[run] ?? style.sent;
    ctx.strokeStyle = stroke;
    ctx.setLineDash(dash);
    ctx.stroke();
    run = null;
  };
  let joined = false; // the path's pen is at the previous sample
  for (let i = 1; i < series.times_ms.length; i++) {
    const [t0, t1] = [series.times_ms[i - 1], series.times_ms[i]];
    const [v0, v1] = [series.values[i - 1], series.values[i]];
    if (v0 == null || v1 == null || t1 - t0 > gap || now - t0 > span) {
      joined = false;
      continue;
    }
    const kind = style[series.delivery[i]] ? series.delivery[i] : "sent";
    if (kind !== run) {
      flush();
      run = kind;
      ctx.beginPath();
      joined = false;
    }
    if (!joined) ctx.moveTo(x(t0), y(v0));
    ctx.lineTo(x(t1), y(v1));
    joined = true;
  }
  flush();
  ctx.setLineDash([]);
  const last = series.times_ms.length - 1;
  if (series.values[last] != null) {
    ctx.fillStyle = (style[series.delivery[last]] ?? style.sent)[0];
    ctx.beginPath(); ctx.arc(x(series.times_ms[last]), y(series.values[last]), 2.5, 0, 2 * Math.PI); ctx.fill();
  }
}

function renderMetrics(list) {
  const box = $("metrics");
  if (!box.dataset.built) {
    for (const m of list) {
      const label = document.createElement("label");
      label.className = "check";
      const input = Object.assign(document.createElement("input"), { type: "checkbox", id: `metric-${m.id}`, value: m.id });
      input.disabled = m.id === "cpu";
      label.append(input, Object.assign(document.createElement("span"), { textContent: m.label }));
      box.append(label);
    }
    box.dataset.built = "1";
  }
  for (const m of list) $(`metric-${m.id}`).checked = m.on || m.id === "cpu";
}

function renderToken(t) {
  const stored = t.stored;
  $("token-stored").hidden = !stored;
  $("token-form").hidden = stored;
  $("token-cancel").hidden = true;
  const where = t.source === "environment"
    ? "Using the token from the environment variable Quix__Sdk__Token."
    : `Saved in ${t.location}.`;
  $("token-where").textContent = stored ? where : "";
  $("token-remove").hidden = t.source === "environment";
  show($("token-error"), t.problem ?? "");
}

// The settings form, from what the file holds: when the window opens and after Save only. The
// other buttons (token, pause, Portal confirmation) leave it alone, so that what the user is
// typing there is not thrown away.
function renderSettings(state) {
  const s = state.settings;
  $("stream_name").value = s.stream_name;
  $("stream_name").placeholder = s.default_stream_name;
  $("buffer_span_ms").value = s.buffer_span_ms;
  $("topic").value = s.topic;
  renderChoices(s);
  $("format").value = s.format;
  showFormatHelp();
  $("interval_ms").value = s.interval_ms;
  $("battery_interval_ms").value = s.battery_interval_ms;
  $("process_count").value = s.process_count;
  $("portal_url").value = s.portal_url;
  $("workspace_id").value = s.workspace_id;
  $("stream_id").value = s.stream_id;
  $("stream_id").placeholder = s.default_stream_id;
  for (const c of CHECKS) $(c).checked = s[c];
  for (const f of ["network_interfaces", "tags", "high_cpu_percent", "high_cpu_seconds",
    "outbox_max_kb", "outbox_max_age_hours", "stall_timeout_ms", "log_level"]) $(f).value = s[f];
  renderMetrics(s.metrics);
}

// Everything else the state tells: the token, the Portal question, the status, the system part.
function render(state) {
  $("log-where").textContent = state.log_dir ? `Log files: ${state.log_dir}` : "Logs go to standard error.";
  $("open-logs").hidden = !state.log_dir;
  $("autostart").checked = state.autostart;
  show($("settings-problem"), state.settings_problem ?? "");
  renderToken(state.token);
  renderPortalConfirm(state.portal_pending);
  renderStatus(state.status);
}

// The record formats and the known Portal APIs come from the backend, with what each is for.
function renderChoices(s) {
  const select = $("format");
  if (!select.options.length) {
    select.replaceChildren(...s.formats.map((f) => {
      const o = new Option(f.value === "quix" ? "Quix Streams envelope" : "JSON rows", f.value);
      o.dataset.help = f.text;
      return o;
    }));
  }
  const list = $("portals");
  if (!list.options.length) {
    list.replaceChildren(...s.portals.map((p) => Object.assign(document.createElement("option"), { value: p.value, label: p.text })));
    $("portal_url-help").textContent =
      `Known: ${s.portals.map((p) => `${p.text} ${p.value}`).join("; ")}. BYOC and on-premise installations have their own.`;
  }
}

function showFormatHelp() {
  $("format-help").textContent = $("format").selectedOptions[0]?.dataset.help ?? "";
}

// A new Portal URL is saved, but the stored token goes there only when the user says so.
function renderPortalConfirm(url) {
  $("portal-confirm").hidden = !url;
  if (!url) return;
  $("portal_url").value = url;
  $("portal-confirm-text").textContent =
    `The stored streaming token has not been sent to ${url} yet. Send it there, or enter the token for that Portal above.`;
}

function showCommandError(err, fallback) {
  if (err && err.kind === "invalid" && err.fields?.length) {
    err.fields.forEach((f) => fieldError(f.field, f.message));
    const first = $(err.fields[0].field);
    if (first) first.focus();
  } else {
    show(fallback, err?.message ?? String(err));
  }
}

function localCheck() {
  let ok = true;
  for (const [field, [lo, hi, unit]] of Object.entries(RANGES)) {
    const text = $(field).value.trim();
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < lo || n > hi) {
      fieldError(field, `\`${field}\` must be between ${lo} and ${hi}${unit ? ` ${unit}` : ""}, got ${JSON.stringify(text)}`);
      ok = false;
    }
  }
  const battery = $("battery_interval_ms").value.trim();
  if (!/^\d+$/.test(battery) || (Number(battery) !== 0 && (Number(battery) < 100 || Number(battery) > 3600000))) {
    fieldError("battery_interval_ms",
      `\`battery_interval_ms\` must be 0 (low-power mode off) or between 100 and 3600000 ms, got ${JSON.stringify(battery)}`);
    ok = false;
  }
  if (!$("topic").value.trim()) {
    fieldError("topic", "`topic` must not be empty");
    ok = false;
  }
  return ok;
}

async function saveSettings(event) {
  event.preventDefault();
  clearErrors();
  show($("settings-saved"), "");
  if (!localCheck()) return;
  const input = Object.fromEntries(FIELDS.map((f) => [f, $(f).value]));
  for (const c of CHECKS) input[c] = $(c).checked;
  input.metrics = [...$("metrics").querySelectorAll("input:checked")].map((i) => i.value);
  // One Save at a time: a second one started before the first is applied could be overtaken.
  const button = event.submitter ?? $("settings").querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const state = await invoke("save_settings", { input });
    renderSettings(state);
    render(state);
    show($("settings-saved"), "Saved.");
  } catch (err) {
    showCommandError(err, $("settings-error"));
  } finally {
    button.disabled = false;
  }
}

async function saveToken(event) {
  event.preventDefault();
  const field = $("token");
  fieldError("token", "");
  try {
    const state = await invoke("set_token", { token: field.value });
    field.value = "";
    render(state);
  } catch (err) {
    if (err?.kind === "invalid") {
      showCommandError(err, $("token-error"));
      return;
    }
    if (err?.kind === "credential_store") {
      // Not stored: the typed token stays in the field, to try again once the store answers.
      show($("token-error"), err?.message ?? String(err));
      return;
    }
    field.value = "";
    // Stored, but not usable yet (rejected, or the Portal unreachable): show where it is kept
    // and why it does not publish.
    render(await invoke("get_state"));
    show($("token-error"), err?.message ?? String(err));
  }
}

async function testConnection() {
  const list = $("steps");
  list.replaceChildren(Object.assign(document.createElement("li"), { textContent: "Testing…" }));
  $("test").disabled = true; // one test at a time: an older answer must not replace a newer one
  try {
    const steps = await invoke("test_connection");
    list.replaceChildren(...steps.map((s) => {
      const li = document.createElement("li");
      li.className = s.ok ? "ok" : "fail";
      li.textContent = `${s.ok ? "✓" : "✗"} ${s.name}: ${s.detail}`;
      return li;
    }));
  } catch (err) {
    list.replaceChildren(Object.assign(document.createElement("li"), { className: "fail", textContent: err?.message ?? String(err) }));
  } finally {
    $("test").disabled = false;
  }
}

async function main() {
  $("settings").addEventListener("submit", saveSettings);
  $("token-form").addEventListener("submit", saveToken);
  $("token-replace").addEventListener("click", () => {
    $("token-stored").hidden = true;
    $("token-form").hidden = false;
    $("token-cancel").hidden = false;
    $("token").focus();
  });
  $("token-cancel").addEventListener("click", () => {
    $("token").value = "";
    $("token-form").hidden = true;
    $("token-cancel").hidden = true;
    $("token-stored").hidden = false;
  });
  $("token-remove").addEventListener("click", async () => {
    try { render(await invoke("remove_token")); } catch (err) { showCommandError(err, $("token-error")); }
  });
  $("toggle").addEventListener("click", async () => {
    const on = $("toggle").textContent.startsWith("Start");
    try { render(await invoke("set_publishing", { on })); } catch (err) { show($("last-error"), err?.message); }
  });
  $("test").addEventListener("click", testConnection);
  $("open-logs").addEventListener("click", async () => {
    show($("logs-error"), "");
    try { await invoke("open_log_folder"); } catch (err) { show($("logs-error"), err?.message ?? String(err)); }
  });
  $("portal-confirm-button").addEventListener("click", async () => {
    try { render(await invoke("confirm_portal")); } catch (err) { showCommandError(err, $("settings-error")); }
  });
  $("autostart").addEventListener("change", async (e) => {
    show($("autostart-error"), "");
    try { e.target.checked = await invoke("set_autostart", { on: e.target.checked }); }
    catch (err) { e.target.checked = !e.target.checked; show($("autostart-error"), err?.message); }
  });
  for (const f of FIELDS) $(f).addEventListener("input", () => fieldError(f, ""));
  $("format").addEventListener("change", showFormatHelp);
  window.addEventListener("resize", drawChart);
  $("metric").addEventListener("change", () => { chartAsked = 0; refreshHistory(); });
  await listen("status", (e) => onStatus(e.payload));
  const state = await invoke("get_state");
  renderSettings(state);
  render(state);
  refreshHistory();
  try { renderProcesses(await invoke("get_processes")); } catch (err) { /* shown with the next status */ }
}

main();
