//! The desktop app for real, under Xvfb in the test command's private D-Bus session (with
//! gnome-keyring's Secret Service): the window driven over WebDriver (tauri-driver +
//! WebKitWebDriver), the tray over D-Bus (StatusNotifierItem + com.canonical.dbusmenu), the
//! autostart entry on disk, the broker and the quixstreams 3 reader on the other side.
//!
//! One test function: the app is a single instance per session bus, so its scenarios run in
//! order. Screenshots of each state are left in `test-output/desktop/`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hostpulse_agent::token::{KeyringStore, SecretStore};
use hostpulse_core::tray::{Look, icon};
use hostpulse_tests::desktop::{Driver, Session, SniHost, Xvfb, app_bin};
use hostpulse_tests::portal::{PortalServer, PortalState};
use hostpulse_tests::rows::record_rows;
use hostpulse_tests::{Mode, RawRecord, Tansu, output_dir, qs3_rows, raw_records, read_qs3_via_portal};
use serde_json::Value;

const TOKEN: &str = "sdk-desktop-token-9999";
const WS: &str = "desk-ws";

fn wait_records(broker: &str, topic: &str, what: &str, ok: impl Fn(&[RawRecord]) -> bool) -> Vec<RawRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let raw = raw_records(broker, topic);
        if ok(&raw) {
            return raw;
        }
        assert!(Instant::now() < deadline, "broker never showed {what}; {} records", raw.len());
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn text(s: &Session, css: &str) -> String {
    s.js(&format!("return document.querySelector('{css}').textContent")).as_str().unwrap_or_default().to_owned()
}

fn visible(s: &Session, css: &str) -> bool {
    s.js(&format!("return !document.querySelector('{css}').hidden")) == Value::Bool(true)
}

/// The settings window's X11 state ("viewable", "unmapped", "missing"), or the close button.
fn x11(display: &str, cmd: &str) -> String {
    let python = std::env::var("HOSTPULSE_DESKTOP_PYTHON").unwrap();
    let out = Command::new(python)
        .arg(hostpulse_tests::workspace().join("tests/python/x11_window.py"))
        .args([cmd, "HostPulse"])
        .env("DISPLAY", display)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_x11(display: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while x11(display, "state") != want {
        assert!(Instant::now() < deadline, "the window never became {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many WebKit web processes run (the app's window's renderer; none while it is closed).
fn webkit_web_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "WebKitWebProces")
        .count()
}

/// Where the autostart plugin puts the login entry on Linux.
fn entry_path(home: &Path) -> std::path::PathBuf {
    home.join(".config/autostart/HostPulse.desktop")
}

/// Nothing sticks out of the window: every element ends within the viewport's width.
const FITS: &str = "return [...document.querySelectorAll('body *')].filter(e => e.offsetParent !== null).every(e => e.getBoundingClientRect().right <= document.documentElement.clientWidth + 1) && document.documentElement.scrollWidth <= document.documentElement.clientWidth";

/// The name of the test's busy child processes.
const BUSY_NAME: &str = "hp-busy-probe";

fn tray_icon(host: &mut SniHost) -> String {
    host.ask("icon")["icon_name"].as_str().unwrap_or_default().to_owned()
}

/// Which of the app's own drawings (`hostpulse_core::tray::icon`) a tray icon file shows: the
/// state's badge and the load level.
fn drawn(png_bytes: &[u8]) -> (Look, u8) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut pixels).expect("one frame");
    pixels.truncate(info.buffer_size());
    let looks = [Look::Unconfigured, Look::Paused, Look::Publishing, Look::Retrying, Look::Error];
    looks
        .into_iter()
        .flat_map(|look| (0..=10).map(move |level| (look, level)))
        .find(|(look, level)| icon(*look, Some(*level)) == pixels)
        .unwrap_or_else(|| panic!("the tray shows one of the app's drawings ({}x{})", info.width, info.height))
}

/// Copies the tray's current icon file next to the screenshots and returns its bytes.
fn keep_icon(host: &mut SniHost, name: &str) -> Vec<u8> {
    let icon = tray_icon(host);
    let bytes = std::fs::read(&icon).unwrap_or_else(|e| panic!("the tray's icon file {icon}: {e}"));
    std::fs::write(output_dir("desktop").join(format!("tray-{name}.png")), &bytes).unwrap();
    bytes
}

#[test]
#[ignore = "end-to-end: needs tansu, the Quix SDK venvs, a Secret Service or a display; run `bash scripts/test.sh` (or `source scripts/setup.sh` and add `-- --include-ignored`)"]
fn the_desktop_app_end_to_end() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "run through scripts/test.sh (D-Bus + Secret Service)"
    );
    let out = output_dir("desktop");
    // The broker sits behind our fault relay, so the app can be cut off from it.
    let (broker, relay) = Tansu::start_behind_relay();
    let portal = PortalServer::start(PortalState::single(WS, TOKEN, &broker.addr));
    let xvfb = Xvfb::start();
    let mut host = SniHost::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap();
    let store = KeyringStore::new();
    let _ = store.clear();
    let envs = [
        ("DISPLAY", xvfb.display.as_str()),
        ("HOME", h),
        ("XDG_CONFIG_HOME", h),
        ("XDG_DATA_HOME", h),
        ("HOSTPULSE_LOG", "info"),
    ];
    let driver = Driver::start(&envs, &out.join("tauri-driver.log"));
    let s = Session::new(&driver, &app_bin());

    // First run: no token, so the window is open and already shows a live CPU value.
    s.wait(
        "the page to load its state",
        30,
        "return document.querySelector('#state').className.includes('unconfigured')",
    );
    s.wait(
        "a live CPU value before any token",
        20,
        "return /\\d+\\.\\d %/.test(document.querySelector('#cpu').textContent)",
    );
    assert!(visible(&s, "#token-form") && !visible(&s, "#token-stored"));
    // The chart is drawn from the agent's history: its newest CPU value is the status's.
    let same = (0..20).any(|_| {
        let h = s.js_async("window.__TAURI__.core.invoke('get_history', { id: 'CPU_Load' })");
        let st = s.js_async("window.__TAURI__.core.invoke('get_state')");
        let same = h["series"]["current"].is_number() && h["series"]["current"] == st["status"]["last_value"];
        if !same {
            std::thread::sleep(Duration::from_millis(200));
        }
        same
    });
    assert!(same, "the history's newest CPU value is the one the status shows");
    // The figures under the chart, from its first seconds on, come from one source: the
    // current value lies between the minimum and the maximum.
    let mut checked = 0;
    for _ in 0..10 {
        let figures = s.js(
            "return ['#chart-now', '#chart-min', '#chart-max'].map(c => parseFloat(document.querySelector(c).textContent.replace(/^[^0-9]*/, '')))",
        );
        let [now, min, max] = [0, 1, 2].map(|i| figures[i].as_f64());
        if let (Some(now), Some(min), Some(max)) = (now, min, max) {
            assert!(min <= now && now <= max, "Now {now}, min {min}, max {max}");
            checked += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(checked >= 5, "the figures show numbers in the first seconds ({checked} of 10 readings)");
    // The window lists the top processes, refreshed while it is open.
    s.wait("the process list", 15, "return document.querySelectorAll('#processes td.name').length >= 3");
    let listed = s.js(
        "return [...document.querySelectorAll('#processes tbody tr')].map(r => [...r.cells].map(c => c.textContent))",
    );
    for row in listed.as_array().unwrap() {
        let cells: Vec<&str> = row.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert!(!cells[0].is_empty() && cells[1].parse::<u32>().is_ok(), "name and pid: {listed}");
        assert!(cells[2].ends_with(" %") && cells[3].ends_with('B'), "CPU and memory: {listed}");
    }
    s.js("document.querySelector('#processes-title').scrollIntoView()");
    s.screenshot(&out.join("01c-top-processes.png"));
    s.js("window.scrollTo(0, 0)");
    s.screenshot(&out.join("01-first-run.png"));
    assert_eq!(s.js(FITS), Value::Bool(true), "nothing overflows at the default size");
    let unlabelled = s.js("return [...document.querySelectorAll('input')].filter(i => !document.querySelector(`label[for=${i.id}]`) && !i.closest('label')).map(i => i.id)");
    assert_eq!(unlabelled, serde_json::json!([]), "every input has a label (keyboard and screen readers)");
    s.js("document.body.style.zoom = '2'");
    s.js("document.querySelector('details').open = true");
    assert_eq!(s.js(FITS), Value::Bool(true), "readable at 200 %: nothing sticks out sideways");
    s.screenshot(&out.join("01b-zoom-200.png"));
    s.js("document.body.style.zoom = '1'; document.querySelector('details').open = false");

    // The tray registered and shows the unconfigured state with the whole menu.
    host.wait_for("items", 20, |v| v["items"].as_array().is_some_and(|a| !a.is_empty()));
    let menu = host.wait_for("menu", 10, |v| {
        v["labels"].as_array().is_some_and(|l| l.iter().any(|x| x.as_str().unwrap_or("").starts_with("Not configured")))
    });
    let labels: Vec<&str> = menu["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    for want in ["Pause publishing", "Settings…", "Open log folder", "Quit"] {
        assert!(labels.iter().any(|l| l.replace('_', "") == want), "{want} in {labels:?}");
    }
    let icon_unconfigured = tray_icon(&mut host);
    keep_icon(&mut host, "unconfigured");

    // Invalid input: inline errors name the field and range; nothing is saved.
    s.fill("#buffer_span_ms", "0");
    s.fill("#interval_ms", "fast");
    s.click("#settings button[type=submit]");
    assert!(text(&s, "#buffer_span_ms-error").contains("`buffer_span_ms` must be between 1 and 60000"));
    assert!(text(&s, "#interval_ms-error").contains("`interval_ms` must be between 100 and 3600000"));
    s.screenshot(&out.join("02a-range-errors.png"));
    s.fill("#buffer_span_ms", "1000");
    s.fill("#interval_ms", "200");
    s.click("details summary");
    s.fill("#stream_id", "bad/id");
    s.click("#settings button[type=submit]");
    s.wait("the backend's stream id error", 10, "return !document.querySelector('#stream_id-error').hidden");
    assert!(
        text(&s, "#stream_id-error").contains("`stream_id` must not contain `/` or `\\`"),
        "{}",
        text(&s, "#stream_id-error")
    );
    let settings_file = home.path().join("hostpulse/settings.toml");
    assert!(!settings_file.exists(), "invalid input changes nothing");
    s.screenshot(&out.join("02-invalid-input.png"));

    // Valid settings: saved to the file and applied.
    s.fill("#stream_id", "desktop-stream");
    s.fill("#stream_name", "Desk Stream");
    s.fill("#portal_url", &portal.url);
    s.click("#settings button[type=submit]");
    s.wait("Saved", 10, "return !document.querySelector('#settings-saved').hidden");
    let saved = std::fs::read_to_string(&settings_file).unwrap();
    assert!(saved.contains("stream_name = \"Desk Stream\"") && saved.contains("buffer_span_ms = 1000"), "{saved}");

    // A token the Portal rejects: the error is shown, the tray turns to its error look.
    s.fill("#token", "not-a-valid-token");
    s.click("#token-form button[type=submit]");
    s.wait("the rejected token's error", 30, "return !document.querySelector('#token-error').hidden");
    assert!(text(&s, "#token-error").contains("rejected the streaming token"), "{}", text(&s, "#token-error"));
    s.wait("the error state", 10, "return document.querySelector('#state').className.includes('error')");
    assert!(visible(&s, "#token-stored"), "the token is kept (it may be the Portal that is wrong)");
    let icon_error =
        host.wait_for("icon", 10, |v| v["icon_name"].as_str() != Some(&icon_unconfigured))["icon_name"].clone();
    keep_icon(&mut host, "error");
    s.js("window.scrollTo(0, 0)");
    s.screenshot(&out.join("02b-token-rejected.png"));
    let notes = host.wait_for("notifications", 10, |v| v["notifications"].as_array().is_some_and(|n| !n.is_empty()));
    let notes = notes["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "one notification for the rejected token: {notes:?}");
    assert_eq!(notes[0]["summary"], "HostPulse: streaming token rejected");
    assert!(notes[0]["body"].as_str().unwrap().contains("new token"), "{notes:?}");

    // The token: into the credential store, never back out.
    s.click("#token-replace");
    s.fill("#token", TOKEN);
    s.click("#token-form button[type=submit]");
    s.wait("the token to be stored", 30, "return !document.querySelector('#token-stored').hidden");
    assert!(text(&s, "#token-where").contains("Secret Service"), "{}", text(&s, "#token-where"));
    assert_eq!(store.get().unwrap().unwrap().expose(), TOKEN, "kept in the real Secret Service");
    s.wait("publishing", 30, "return document.querySelector('#state').className.includes('publishing')");
    let page = s.js("return document.documentElement.outerHTML + JSON.stringify([...document.querySelectorAll('input')].map(i => i.value))");
    assert!(!page.as_str().unwrap().contains(TOKEN), "the page does not hold the token");
    let state = s.js_async("window.__TAURI__.core.invoke('get_state')");
    assert!(!state.to_string().contains(TOKEN), "no command returns the token: {state}");
    assert!(!std::fs::read_to_string(&settings_file).unwrap().contains(TOKEN));

    // The broker receives the named stream, grouped by the saved span (1 s of 200 ms samples).
    let topic = format!("{WS}-cpu-load");
    let raw = wait_records(&broker.addr, &topic, "three data records", |r| {
        r.iter().filter(|x| x.model() == "ParameterData").count() >= 3
    });
    assert_eq!(raw[0].model(), "StreamProperties");
    assert_eq!(raw[0].envelope()["V"]["Name"], "Desk Stream");
    assert!(raw.iter().all(|r| r.key == "desktop-stream"));
    let rows_per_record: Vec<usize> =
        raw.iter().filter(|r| r.model() == "ParameterData").map(|r| record_rows(r).len()).collect();
    assert!(
        rows_per_record[1..].iter().all(|n| (3..=6).contains(n)),
        "a 1000 ms span groups 200 ms samples: {rows_per_record:?}"
    );
    let rows: usize = rows_per_record.iter().sum();
    let read = qs3_rows(&read_qs3_via_portal(&portal.url, TOKEN, "cpu-load", rows, "desktop-qs3"));
    assert!(read.iter().all(|r| r.stream_id == "desktop-stream" && r.value("CPU_Load").is_some()));
    s.js("window.scrollTo(0, 0)");
    s.screenshot(&out.join("03-publishing.png"));
    let icon_publishing = host.wait_for("icon", 10, |v| v["icon_name"] != icon_error)["icon_name"].clone();
    assert_ne!(icon_publishing.as_str(), Some(icon_unconfigured.as_str()));
    keep_icon(&mut host, "publishing");

    // A new Portal URL: the stored token does not go there until the user says so.
    let other = PortalServer::start(PortalState { kafka: None, ..PortalState::single(WS, TOKEN, &broker.addr) });
    s.js("document.querySelector('details').open = true");
    s.fill("#portal_url", &other.url);
    s.click("#settings button[type=submit]");
    s.wait("the question", 10, "return !document.querySelector('#portal-confirm').hidden");
    assert!(text(&s, "#portal-confirm-text").contains(&other.url), "{}", text(&s, "#portal-confirm-text"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(other.log().is_empty(), "nothing, least of all the token, went to the new Portal before the user agreed");
    assert!(std::fs::read_to_string(&settings_file).unwrap().contains(&portal.url), "the file keeps the confirmed URL");
    s.screenshot(&out.join("03a-portal-confirm.png"));
    s.click("#portal-confirm-button");
    s.wait("the question answered", 10, "return document.querySelector('#portal-confirm').hidden");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !other.log().iter().any(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))) {
        assert!(std::time::Instant::now() < deadline, "the token went to the confirmed Portal");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(std::fs::read_to_string(&settings_file).unwrap().contains(&other.url));
    s.wait(
        "publishing through the new Portal",
        30,
        "return document.querySelector('#state').className.includes('publishing')",
    );

    // The record format: JSON rows from the next sample on, then back to the envelope.
    let topic = format!("{WS}-cpu-load");
    s.js("const f = document.querySelector('#format'); f.value = 'json'; f.dispatchEvent(new Event('change'))");
    assert!(text(&s, "#format-help").contains("what quixstreams 3 reads by default"), "{}", text(&s, "#format-help"));
    s.screenshot(&out.join("03c-json-format.png"));
    s.click("#settings button[type=submit]");
    s.wait("Saved", 10, "return !document.querySelector('#settings-saved').hidden");
    assert!(std::fs::read_to_string(&settings_file).unwrap().contains("format = \"json\""));
    let raw = wait_records(&broker.addr, &topic, "JSON rows", |r| {
        r.iter().filter(|x| x.value.starts_with(r#"{"timestamp":"#)).count() >= 3
    });
    let row: Value = serde_json::from_str(&raw.iter().rev().find(|x| x.value.starts_with('{')).unwrap().value).unwrap();
    assert!(row["CPU_Load"].is_number() && row["host"].is_string(), "{row}");
    let first_row = raw.iter().position(|x| x.value.starts_with(r#"{"timestamp":"#)).unwrap();
    assert_eq!(raw[first_row - 1].model(), "StreamEnd", "the envelope stream ended before the rows");
    s.js("document.querySelector('#format').value = 'quix'");
    s.click("#settings button[type=submit]");
    s.wait("Saved", 10, "return !document.querySelector('#settings-saved').hidden");
    wait_records(&broker.addr, &topic, "the envelope again", |r| {
        r.last().is_some_and(|x| x.value.starts_with(r#"{"C":"JT","K":"ParameterData""#))
    });

    // Tray: Pause ends the stream; Start begins it again; the icon follows the state.
    let answer = host.ask("click Pause publishing");
    assert!(answer.get("clicked").is_some(), "{answer}");
    wait_records(&broker.addr, &topic, "a StreamEnd after Pause", |r| {
        r.last().is_some_and(|x| x.model() == "StreamEnd")
    });
    s.wait("the window to show Paused", 10, "return document.querySelector('#state').className.includes('paused')");
    host.wait_for("menu", 10, |v| v["labels"].as_array().is_some_and(|l| l.iter().any(|x| x == "Start publishing")));
    let icon_paused = host.wait_for("icon", 10, |v| v["icon_name"] != icon_publishing)["icon_name"].clone();
    assert_ne!(icon_paused.as_str(), Some(icon_unconfigured.as_str()));
    keep_icon(&mut host, "paused");
    s.js("window.scrollTo(0, 0)");
    s.screenshot(&out.join("04-paused.png"));
    let before = raw_records(&broker.addr, &topic).len();
    host.ask("click Start publishing");
    let raw = wait_records(&broker.addr, &topic, "data again after Start", |r| {
        r.len() > before + 2 && r[before..].iter().any(|x| x.model() == "ParameterData")
    });
    assert_eq!(raw[before].model(), "StreamProperties", "a new stream life starts with its properties");

    // The window's own Pause and Start leave what is being typed in the settings form alone.
    let saved_name = s.js("return document.querySelector('#stream_name').value");
    s.fill("#stream_name", "typed, not saved");
    s.click("#toggle");
    s.wait("Paused from the window", 10, "return document.querySelector('#state').className.includes('paused')");
    s.click("#toggle");
    s.wait(
        "publishing again from the window",
        20,
        "return !document.querySelector('#state').className.includes('paused')",
    );
    assert_eq!(
        s.js("return document.querySelector('#stream_name').value"),
        "typed, not saved",
        "an edit not saved yet survives Pause and Start"
    );
    s.js(&format!("document.querySelector('#stream_name').value = {saved_name}"));
    let before = raw_records(&broker.addr, &topic).len();
    let raw = wait_records(&broker.addr, &topic, "data after the window's Start", |r| {
        r.len() > before && r[before..].iter().any(|x| x.model() == "ParameterData")
    });

    // More than CPU: a metric switched on in the window reaches the broker with its definition
    // and the tags; the chart draws its last hour from the local history.
    let before = raw.len();
    s.click("#metric-memory");
    s.fill("#tags", "site=lab");
    s.click("#settings button[type=submit]");
    s.wait("Saved", 10, "return !document.querySelector('#settings-saved').hidden");
    let saved = std::fs::read_to_string(&settings_file).unwrap();
    let saved: hostpulse_core::settings::Settings = toml::from_str(&saved).unwrap();
    assert_eq!(
        (saved.metrics, saved.tags.get("site").map(String::as_str)),
        (vec!["cpu".into(), "memory".into()], Some("lab"))
    );
    let has_memory =
        |r: &RawRecord| r.model() == "ParameterData" && r.envelope()["V"]["NumericValues"]["Memory_Used"].is_array();
    let raw = wait_records(&broker.addr, &topic, "memory values after switching it on", |r| {
        r[before..].iter().any(has_memory)
    });
    let defs = raw[before..].iter().rev().find(|r| r.model() == "ParameterDefinitions").expect("new definitions");
    let defs = defs.envelope()["V"].to_string();
    assert!(defs.contains(r#""Id":"Memory_Used""#) && defs.contains(r#""Name":"memory""#), "{defs}");
    let data = raw[before..].iter().rev().find(|r| has_memory(r)).unwrap().envelope();
    assert!(data["V"]["NumericValues"]["Memory_Used"][0].as_f64().unwrap() > 0.0, "{data}");
    assert_eq!(data["V"]["TagValues"]["site"][0], "lab", "{data}");
    s.wait(
        "the chart to offer memory",
        10,
        "return [...document.querySelectorAll('#metric option')].some(o => o.value === 'Memory_Used')",
    );
    s.js("const m = document.querySelector('#metric'); m.value = 'Memory_Used'; m.dispatchEvent(new Event('change'))");
    s.wait("the memory figures", 10, "return /[KMG]iB/.test(document.querySelector('#chart-now').textContent)");
    // The line is drawn in the accent colour (sent); count its pixels on the canvas.
    let line_pixels = "const c = document.querySelector('#chart'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i+2] > 180 && d[i] < 90 && d[i+3] > 200) n++; return n";
    s.js("window.scrollTo(0, 0)");
    s.screenshot(&out.join("05-history-memory.png"));
    s.wait("the memory line", 10, &format!("return (() => {{ {line_pixels} }})() > 20"));
    assert_eq!(s.js(FITS), Value::Bool(true), "the chart and the new sections fit");
    s.js("const m = document.querySelector('#metric'); m.value = 'CPU_Load'; m.dispatchEvent(new Event('change'))");
    s.wait("the CPU figures", 10, "return /%/.test(document.querySelector('#chart-now').textContent)");

    // Notifications: CPU at or above 60 % for 3 s, under a busy loop (both cores) for much
    // longer, gives exactly one notification on the session bus. (60 %: well above what the app,
    // WebKit and the broker use between phases, so nothing fires before the loop starts.)
    assert_eq!(s.js("return document.querySelector('#notify_high_cpu').checked"), Value::Bool(true), "on by default");
    s.fill("#high_cpu_percent", "60");
    s.fill("#high_cpu_seconds", "3");
    s.click("#settings button[type=submit]");
    s.wait("Saved", 10, "return !document.querySelector('#settings-saved').hidden");
    s.js("document.querySelector('#metrics-title').scrollIntoView()");
    s.screenshot(&out.join("05c-metrics-and-notifications.png"));
    let seen = host.ask("notifications")["notifications"].as_array().unwrap().len();
    // Two busy child processes with a name of their own (a copy of `yes` writing to /dev/null):
    // the notification, the tray and the window name them.
    let busy_bin = home.path().join(BUSY_NAME);
    std::fs::copy("/usr/bin/yes", &busy_bin).unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&busy_bin)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("the busy child starts")
        })
        .collect();
    host.wait_for("notifications", 30, |v| v["notifications"].as_array().is_some_and(|n| n.len() > seen));
    let menu = host.wait_for("menu", 10, |v| v.to_string().contains(&format!("top: {BUSY_NAME}")));
    assert!(menu.to_string().contains("CPU"), "the status line names the top process: {menu}");
    s.wait(
        "the busy process at the top of the list",
        10,
        &format!("return document.querySelector('#processes td.name')?.textContent === '{BUSY_NAME}'"),
    );
    keep_icon(&mut host, "busy");
    s.js("window.scrollTo(0, 0)");
    s.screenshot(&out.join("05b-busy.png"));
    s.js("document.querySelector('#processes-title').scrollIntoView()");
    s.screenshot(&out.join("05d-busy-processes.png"));
    std::thread::sleep(Duration::from_secs(10));
    for child in &mut children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let notes = host.ask("notifications")["notifications"].as_array().unwrap()[seen..].to_vec();
    assert_eq!(notes.len(), 1, "exactly one notification for one long busy spell: {notes:?}");
    assert_eq!(notes[0]["summary"], "HostPulse: high CPU load");
    let body = notes[0]["body"].as_str().unwrap();
    assert!(body.contains("for 3 s (at or above 60 %): "), "{body}");
    let named = body.split(": ").nth(1).unwrap();
    assert!(named.starts_with(&format!("{BUSY_NAME} ")), "the busy child is named first: {body}");
    assert!(named.matches(BUSY_NAME).count() == 2, "both children are named: {body}");
    let busy_icon = drawn(&std::fs::read(out.join("tray-busy.png")).unwrap());
    assert!(busy_icon.0 == Look::Publishing && busy_icon.1 >= 8, "the tray icon shows the load: {busy_icon:?}");
    s.wait("the load back down", 20, "return parseFloat(document.querySelector('#cpu').textContent) < 50");
    host.wait_for("icon", 10, |v| {
        std::fs::read(v["icon_name"].as_str().unwrap_or_default()).is_ok_and(|b| drawn(&b).1 <= 5)
    });
    keep_icon(&mut host, "calm");

    // The page may call our commands only: a plugin command outside the capability is refused.
    let denied = s.js_async("window.__TAURI__.core.invoke('plugin:autostart|enable')");
    assert!(
        denied["rejected"].as_str().is_some_and(|e| e.contains("not allowed")),
        "plugin commands are refused to the page: {denied}"
    );
    assert!(!entry_path(home.path()).exists());

    // Renaming while publishing: applied without a restart, the new name goes out before more data.
    s.fill("#stream_name", "Desk Stream 2");
    s.click("#settings button[type=submit]");
    s.wait("Saved", 10, "return !document.querySelector('#settings-saved').hidden");
    wait_records(&broker.addr, &topic, "the new name", |r| {
        r.iter().any(|x| x.model() == "StreamProperties" && x.envelope()["V"]["Name"] == "Desk Stream 2")
    });

    // Test connection runs the same steps as `hostpulse check`.
    s.click("#test");
    s.wait(
        "the connection test",
        30,
        "return [...document.querySelectorAll('#steps li')].some(li => li.textContent.includes('broker login'))",
    );
    let steps = s.js("return [...document.querySelectorAll('#steps li')].map(li => li.textContent)");
    assert!(steps.as_array().unwrap().iter().all(|l| l.as_str().unwrap().starts_with('✓')), "{steps}");

    // The broker goes away: window and tray say Retrying with the reason and the waiting
    // samples; when it is back, what was measured meanwhile arrives.
    let wall_ns = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let cut_at = wall_ns();
    relay.set(Mode::Refuse);
    s.wait("Retrying", 60, "return document.querySelector('#state').className.includes('retrying')");
    s.wait("samples waiting", 20, "return Number(document.querySelector('#waiting').textContent) > 2");
    let shown = text(&s, "#last-error");
    assert!(shown.contains("cannot reach the Kafka broker") && shown.contains("next try at"), "{shown}");
    host.wait_for("menu", 10, |v| {
        v["labels"].as_array().is_some_and(|l| l.iter().any(|x| x.as_str().unwrap_or("").starts_with("Retrying")))
    });
    let menu = host.ask("menu");
    assert!(menu.to_string().contains("waiting"), "the tray counts the waiting records: {menu}");
    keep_icon(&mut host, "retrying");
    assert_eq!(drawn(&std::fs::read(out.join("tray-retrying.png")).unwrap()).0, Look::Retrying);
    assert_eq!(
        drawn(&std::fs::read(out.join("tray-error.png")).unwrap()).0,
        Look::Error,
        "retrying looks unlike an error"
    );
    s.js("window.scrollTo(0, 0)");
    s.screenshot(&out.join("03b-retrying.png"));
    let back_at = wall_ns();
    relay.set(Mode::Pass);
    s.wait("publishing again", 60, "return document.querySelector('#state').className.includes('publishing')");
    wait_records(&broker.addr, &topic, "the samples measured while the broker was away", |r| {
        r.iter().filter(|x| x.model() == "ParameterData").any(|x| {
            let ts = record_rows(x).first().map_or(0, |row| row.timestamp_ns);
            ts > cut_at + 1_000_000_000 && ts < back_at
        })
    });

    // Autostart: the toggle writes and removes a login entry whose Exec runs this app.
    let entry = entry_path(home.path());
    s.click("#autostart");
    s.wait("autostart on", 10, "return document.querySelector('#autostart').checked");
    let desktop = std::fs::read_to_string(&entry).unwrap_or_else(|e| panic!("{}: {e}", entry.display()));
    let exec = desktop.lines().find_map(|l| l.strip_prefix("Exec=")).expect("an Exec line");
    let program = exec.split_whitespace().next().unwrap().trim_matches('"');
    assert!(Path::new(program).is_file(), "Exec runs an existing program: {exec}");
    s.click("#autostart");
    s.wait("autostart off", 10, "return !document.querySelector('#autostart').checked");
    assert!(!entry.exists(), "turning it off removes the entry");

    // Remove: the token leaves the credential store, the stream ends, the app is unconfigured.
    s.click("#token-remove");
    s.wait(
        "unconfigured after Remove",
        10,
        "return document.querySelector('#state').className.includes('unconfigured')",
    );
    s.wait("the token field back", 10, "return !document.querySelector('#token-form').hidden");
    assert_eq!(store.get().unwrap(), None);
    wait_records(&broker.addr, &topic, "a StreamEnd after Remove", |r| {
        r.last().is_some_and(|x| x.model() == "StreamEnd")
    });
    // The token again, through the window: publishing resumes.
    s.fill("#token", TOKEN);
    s.click("#token-form button[type=submit]");
    s.wait("publishing again", 30, "return document.querySelector('#state').className.includes('publishing')");

    // Closing the window (the window manager's close button) destroys it, and WebKit's processes
    // with it; the app keeps publishing from the tray, and Settings… opens a new window. (WebDriver
    // drives only the first window, so everything it checks comes before this.)
    wait_x11(&xvfb.display, "viewable");
    x11(&xvfb.display, "close");
    wait_x11(&xvfb.display, "missing");
    let deadline = Instant::now() + Duration::from_secs(10);
    while webkit_web_processes() > 0 {
        assert!(Instant::now() < deadline, "WebKit's web process outlived the closed window");
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent = raw_records(&broker.addr, &topic).len();
    wait_records(&broker.addr, &topic, "publishing to go on with the window closed", |r| r.len() > sent);
    host.ask("click Settings…");
    wait_x11(&xvfb.display, "viewable");
    assert!(webkit_web_processes() > 0, "the new window has its web process");

    // Single instance: a second launch exits and the first shows its window.
    x11(&xvfb.display, "close");
    wait_x11(&xvfb.display, "missing");
    let started = Instant::now();
    let second = Command::new(app_bin()).envs(envs).output().unwrap();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(started.elapsed() < Duration::from_secs(15));
    wait_x11(&xvfb.display, "viewable");

    // Quit from the tray: the stream is closed and the app exits.
    host.ask("click Quit");
    wait_records(&broker.addr, &topic, "a StreamEnd after Quit", |r| {
        r.last().is_some_and(|x| x.model() == "StreamEnd")
    });
    wait_x11(&xvfb.display, "missing");

    // Quit still exits within a few seconds when the broker has gone away.
    let mut app = Command::new(app_bin()).envs(envs).spawn().unwrap();
    host.wait_for("menu", 30, |v| {
        v["labels"].as_array().is_some_and(|l| l.iter().any(|x| x.as_str().unwrap_or("").starts_with("Publishing")))
    });
    drop(broker);
    relay.set(Mode::Refuse);
    std::thread::sleep(Duration::from_secs(1));
    host.ask("click Quit");
    let asked = Instant::now();
    let exited = loop {
        if let Some(status) = app.try_wait().unwrap() {
            break status;
        }
        assert!(asked.elapsed() < Duration::from_secs(8), "Quit hung with the broker gone");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exited.success());
    store.clear().unwrap();

    // The app's log file, in the XDG state dir (HOME is the test's): what happened is there, the
    // token is not, and nobody else may read it.
    let logs = home.path().join(".local/state/hostpulse/logs");
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&logs)
        .unwrap_or_else(|e| panic!("no log folder {}: {e}", logs.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.iter().all(|f| f.file_name().unwrap().to_string_lossy().starts_with("hostpulse-app")), "{files:?}");
    let text: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    std::fs::write(out.join("app.log"), &text).unwrap();
    for line in
        ["logging to files in", "connected", "Portal URL confirmed", "record format changed", "settings applied"]
    {
        assert!(text.contains(line), "the log tells {line:?}");
    }
    assert!(!text.contains(TOKEN), "the token never reaches the log file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&logs).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
