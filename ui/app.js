// HostPulse settings window. Talks to the backend only through our Tauri commands and the
// "status" event; the backend validates everything again and never returns the token.

const { invoke } = window.__TAURI__.core;
const { listen } = window.__TAURI__.event;

const $ = (id) => document.getElementById(id);
const FIELDS = ["stream_name", "buffer_span_ms", "topic", "interval_ms", "portal_url", "workspace_id", "stream_id"];
const RANGES = { interval_ms: [200, 3600000], buffer_span_ms: [1, 60000] };
const STATE_TEXT = {
  unconfigured: "Not configured", connecting: "Connecting", publishing: "Publishing",
  paused: "Paused", stopping: "Stopping", retrying: "Retrying", error: "Error",
};
const history = [];
const HISTORY = 120;

function show(el, text) {
  el.textContent = text ?? "";
  el.hidden = !text;
}

function fieldError(field, message) {
  const input = $(field);
  const el = $(`${field}-error`);
  if (!el) return;
  show(el, message);
  if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
}

function clearErrors() {
  FIELDS.forEach((f) => fieldError(f, ""));
  show($("settings-error"), "");
}

function renderStatus(s) {
  const pill = $("state");
  pill.textContent = STATE_TEXT[s.state] ?? s.state;
  pill.className = `pill ${s.state}`;
  $("cpu").textContent = s.last_value == null ? "–" : `${s.last_value.toFixed(1)} %`;
  $("sent").textContent = s.acknowledged;
  $("pending").textContent = s.pending;
  $("failed").textContent = s.failed;
  $("dropped").textContent = s.dropped;
  $("dropped-row").hidden = s.dropped === 0;
  let error = s.last_error ? `Last error: ${s.last_error}` : "";
  if (s.state === "retrying" && s.next_try_ms != null) {
    const next = new Date(s.next_try_ms).toLocaleTimeString();
    error += `\nSamples wait on this computer; next try at ${next}.`;
  }
  show($("last-error"), error);
  const toggle = $("toggle");
  toggle.disabled = !["publishing", "paused", "connecting", "retrying"].includes(s.state);
  toggle.textContent = s.state === "paused" ? "Start publishing" : "Pause publishing";
  if (s.samples !== renderStatus.samples && s.last_value != null) {
    renderStatus.samples = s.samples;
    history.push(s.last_value);
    if (history.length > HISTORY) history.shift();
    drawChart();
  }
}

function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * ratio;
  canvas.height = h * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const css = getComputedStyle(document.documentElement);
  ctx.strokeStyle = css.getPropertyValue("--line");
  ctx.lineWidth = 1;
  for (const pct of [0, 50, 100]) {
    const y = h - 4 - (pct / 100) * (h - 8);
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
  }
  if (history.length < 2) return;
  ctx.strokeStyle = css.getPropertyValue("--accent");
  ctx.lineWidth = 2;
  ctx.beginPath();
  history.forEach((v, i) => {
    const x = (i / (HISTORY - 1)) * w;
    const y = h - 4 - (v / 100) * (h - 8);
    i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y);
  });
  ctx.stroke();
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

function render(state) {
  const s = state.settings;
  $("stream_name").value = s.stream_name;
  $("stream_name").placeholder = s.default_stream_name;
  $("buffer_span_ms").value = s.buffer_span_ms;
  $("topic").value = s.topic;
  $("interval_ms").value = s.interval_ms;
  $("portal_url").value = s.portal_url;
  $("workspace_id").value = s.workspace_id;
  $("stream_id").value = s.stream_id;
  $("stream_id").placeholder = s.default_stream_id;
  $("tls_verify_hostname").checked = s.tls_verify_hostname;
  $("autostart").checked = state.autostart;
  show($("settings-problem"), state.settings_problem ?? "");
  renderToken(state.token);
  renderStatus(state.status);
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
  for (const [field, [lo, hi]] of Object.entries(RANGES)) {
    const text = $(field).value.trim();
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < lo || n > hi) {
      fieldError(field, `\`${field}\` must be between ${lo} and ${hi} ms, got ${JSON.stringify(text)}`);
      ok = false;
    }
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
  input.tls_verify_hostname = $("tls_verify_hostname").checked;
  try {
    render(await invoke("save_settings", { input }));
    show($("settings-saved"), "Saved.");
  } catch (err) {
    showCommandError(err, $("settings-error"));
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
  $("autostart").addEventListener("change", async (e) => {
    show($("autostart-error"), "");
    try { e.target.checked = await invoke("set_autostart", { on: e.target.checked }); }
    catch (err) { e.target.checked = !e.target.checked; show($("autostart-error"), err?.message); }
  });
  for (const f of FIELDS) $(f).addEventListener("input", () => fieldError(f, ""));
  window.addEventListener("resize", drawChart);
  await listen("status", (e) => renderStatus(e.payload));
  render(await invoke("get_state"));
}

main();
