//! What the tray shows for a status: the icon (the CPU load as a level, the state as a badge),
//! the status line, the error line and the toggle. Pure, so that plain `cargo test` checks it
//! (the icon's pixels too); the desktop app applies it to the tray.

use crate::status::{PublisherState, Status, StatusView};

/// Which icon the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// No token yet.
    Unconfigured,
    /// Publishing switched off.
    Paused,
    /// Samples flow.
    Publishing,
    /// Connection trouble that heals by itself: samples wait in the outbox.
    Retrying,
    /// Stopped by an error the user must look at.
    Error,
}

impl Look {
    /// The name used in the tray's tooltip (and by tests).
    pub fn name(self) -> &'static str {
        match self {
            Look::Unconfigured => "not configured",
            Look::Paused => "paused",
            Look::Publishing => "publishing",
            Look::Retrying => "retrying",
            Look::Error => "error",
        }
    }
}

/// What the tray shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TrayView {
    /// The icon's badge.
    pub look: Look,
    /// The icon's level: the CPU load in tenths (0–10), `None` before the first reading.
    pub level: Option<u8>,
    /// "Publishing · CPU 12.5 % · 42 acknowledged".
    pub status_line: String,
    /// "Last error: …", or `None`.
    pub error_line: Option<String>,
    /// "Pause publishing" or "Start publishing".
    pub toggle_label: &'static str,
    /// Whether the toggle does anything (not without a token).
    pub toggle_enabled: bool,
}

/// Longest error shown in the tray menu, in characters.
const ERROR_CHARS: usize = 80;

/// The tray view of `status`.
pub fn view(status: &Status) -> TrayView {
    let look = match &status.state {
        PublisherState::Unconfigured => Look::Unconfigured,
        PublisherState::Paused | PublisherState::Stopping => Look::Paused,
        PublisherState::Connecting | PublisherState::Publishing => Look::Publishing,
        PublisherState::Backoff { .. } => Look::Retrying,
        PublisherState::Failed { .. } => Look::Error,
    };
    let level = status.last_value.filter(|v| v.is_finite()).map(|v| (v.clamp(0.0, 100.0) / 10.0).round() as u8);
    let v = StatusView::from(status);
    let cpu = v.last_value.map(|x| format!("CPU {x:.1} %")).unwrap_or_else(|| "CPU –".into());
    let mut status_line = format!("{} · {cpu} · {} acknowledged", v.label, v.acknowledged);
    if v.waiting > 0 {
        status_line += &format!(" · {} waiting", v.waiting);
    }
    if v.dropped > 0 {
        status_line += &format!(" · {} dropped", v.dropped);
    }
    if let Some(top) = status.spell_top.first().filter(|p| p.cpu > 0.0) {
        status_line += &format!(" · top: {}", crate::processes::summary(std::slice::from_ref(top)));
    }
    if status.low_power {
        status_line += &format!(" · on battery, every {}", seconds(status.interval_ms));
    }
    let error_line = v.error.map(|e| {
        let short: String = e.chars().take(ERROR_CHARS).collect();
        format!("Last error: {short}{}", if e.chars().count() > ERROR_CHARS { "…" } else { "" })
    });
    TrayView { look, level, status_line, error_line, toggle_label: v.toggle_label, toggle_enabled: v.can_toggle }
}

/// "5 s", "2.5 s", "500 ms".
fn seconds(ms: u64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms % 1000 == 0 => format!("{} s", ms / 1000),
        ms => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// The load level of the icon changes at most this often (a new state shows at once).
pub const ICON_MIN_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// Decides when the tray icon is drawn again: only when the picture changes, a new state at
/// once, a new load level at most once per [`ICON_MIN_GAP`] (at 10 Hz the load would otherwise
/// redraw the icon, a PNG and a D-Bus update, ten times a second).
#[derive(Debug, Default)]
pub struct IconPacer {
    drawn: Option<(Look, Option<u8>)>,
    at: Option<std::time::Duration>,
}

impl IconPacer {
    /// Whether to draw `look` at `level` now (monotonic time `now`); if so, it counts as drawn.
    pub fn draw(&mut self, now: std::time::Duration, look: Look, level: Option<u8>) -> bool {
        let due = match self.drawn {
            None => true,
            Some(drawn) if drawn == (look, level) => false,
            Some((drawn_look, _)) if drawn_look != look => true,
            Some(_) => self.at.is_none_or(|at| now.saturating_sub(at) >= ICON_MIN_GAP),
        };
        if due {
            self.drawn = Some((look, level));
            self.at = Some(now);
        }
        due
    }
}

/// The tray icon's side, pixels (panels scale it to 16–24).
pub const ICON_SIZE: u32 = 32;

type Rgb = [f32; 3];

const FRAME: Rgb = [0.13, 0.15, 0.18];
const OUTLINE: Rgb = [0.94, 0.95, 0.96];
const GREEN: Rgb = [0.24, 0.77, 0.43];
const AMBER: Rgb = [0.96, 0.69, 0.10];
const RED: Rgb = [0.90, 0.24, 0.26];
const GREY: Rgb = [0.58, 0.61, 0.65];
const WHITE: Rgb = [1.0, 1.0, 1.0];

/// A straight-alpha RGBA canvas with anti-aliased shapes given as signed distances (negative
/// inside), so that the icon stays crisp after the panel scales it down.
struct Canvas {
    px: Vec<[f32; 4]>,
}

impl Canvas {
    fn new() -> Self {
        Canvas { px: vec![[0.0; 4]; (ICON_SIZE * ICON_SIZE) as usize] }
    }

    /// Paints `color` where `distance` (of the pixel's centre) is below zero, blending its edge.
    fn fill(&mut self, color: Rgb, distance: impl Fn(f32, f32) -> f32) {
        for (i, p) in self.px.iter_mut().enumerate() {
            let (x, y) = ((i as u32 % ICON_SIZE) as f32 + 0.5, (i as u32 / ICON_SIZE) as f32 + 0.5);
            let a = (0.5 - distance(x, y)).clamp(0.0, 1.0);
            if a > 0.0 {
                let out_a = a + p[3] * (1.0 - a);
                for c in 0..3 {
                    p[c] = (color[c] * a + p[c] * p[3] * (1.0 - a)) / out_a;
                }
                p[3] = out_a;
            }
        }
    }

    fn rgba(&self) -> Vec<u8> {
        self.px.iter().flat_map(|p| p.map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8)).collect()
    }
}

fn rounded_rect(x0: f32, y0: f32, x1: f32, y1: f32, r: f32) -> impl Fn(f32, f32) -> f32 {
    move |x, y| {
        let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        let (qx, qy) = ((x - cx).abs() - (x1 - x0) / 2.0 + r, (y - cy).abs() - (y1 - y0) / 2.0 + r);
        qx.max(0.0).hypot(qy.max(0.0)) + qx.max(qy).min(0.0) - r
    }
}

fn circle(cx: f32, cy: f32, r: f32) -> impl Fn(f32, f32) -> f32 {
    move |x, y| (x - cx).hypot(y - cy) - r
}

/// A line from `a` to `b`, `w` wide, with round ends.
fn line(a: (f32, f32), b: (f32, f32), w: f32) -> impl Fn(f32, f32) -> f32 {
    move |x, y| {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let t = (((x - a.0) * dx + (y - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
        (x - a.0 - t * dx).hypot(y - a.1 - t * dy) - w / 2.0
    }
}

/// The colour of the level for a load of `level` tenths: green, amber from 60 %, red from 90 %.
fn level_color(look: Look, level: u8) -> Rgb {
    match (look, level) {
        (Look::Unconfigured | Look::Paused, _) => GREY,
        (_, 9..) => RED,
        (_, 6..) => AMBER,
        _ => GREEN,
    }
}

/// The tray icon, [`ICON_SIZE`]² RGBA: a gauge (dark, with a light outline, so that it reads on
/// light and dark panels) filled to the CPU load, green, amber or red by the load (grey when
/// paused or not configured); and in its lower right corner the state's badge: none while
/// publishing, a grey pause sign, an amber "waiting" badge (three dots) while retrying, a red
/// cross on error, a grey question mark when not configured.
pub fn icon(look: Look, level: Option<u8>) -> Vec<u8> {
    let mut c = Canvas::new();
    let (x0, y0, x1, y1) = (5.0, 2.0, 21.0, 30.0);
    c.fill(OUTLINE, rounded_rect(x0 - 1.5, y0 - 1.5, x1 + 1.5, y1 + 1.5, 5.0));
    c.fill(FRAME, rounded_rect(x0, y0, x1, y1, 3.5));
    if let Some(level) = level.map(|l| l.min(10)) {
        let (inner_top, inner_bottom) = (y0 + 2.5, y1 - 2.5);
        // At least a sliver, so that 0 % reads as "measured, idle", not "nothing".
        let height = ((inner_bottom - inner_top) * f32::from(level) / 10.0).max(2.0);
        c.fill(level_color(look, level), rounded_rect(x0 + 2.5, inner_bottom - height, x1 - 2.5, inner_bottom, 1.5));
    }
    let (bx, by, r) = (24.5, 24.5, 7.0);
    let badge = match look {
        Look::Publishing => None,
        Look::Paused | Look::Unconfigured => Some(GREY),
        Look::Retrying => Some(AMBER),
        Look::Error => Some(RED),
    };
    if let Some(color) = badge {
        c.fill(OUTLINE, circle(bx, by, r + 1.5));
        c.fill(color, circle(bx, by, r));
        match look {
            Look::Paused => {
                c.fill(WHITE, line((bx - 2.2, by - 3.2), (bx - 2.2, by + 3.2), 2.2));
                c.fill(WHITE, line((bx + 2.2, by - 3.2), (bx + 2.2, by + 3.2), 2.2));
            }
            Look::Retrying => {
                for dx in [-3.4, 0.0, 3.4] {
                    c.fill(FRAME, circle(bx + dx, by, 1.35));
                }
            }
            Look::Error => {
                c.fill(WHITE, line((bx - 3.0, by - 3.0), (bx + 3.0, by + 3.0), 2.2));
                c.fill(WHITE, line((bx + 3.0, by - 3.0), (bx - 3.0, by + 3.0), 2.2));
            }
            Look::Unconfigured => {
                c.fill(WHITE, line((bx - 2.0, by - 2.0), (bx, by - 3.6), 1.9));
                c.fill(WHITE, line((bx, by - 3.6), (bx + 2.0, by - 2.0), 1.9));
                c.fill(WHITE, line((bx + 2.0, by - 2.0), (bx, by + 0.6), 1.9));
                c.fill(WHITE, circle(bx, by + 3.6, 1.2));
            }
            Look::Publishing => {}
        }
    }
    c.rgba()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: PublisherState) -> Status {
        Status { last_value: Some(12.34), records_acknowledged: 42, ..Status::new(state) }
    }

    #[test]
    fn each_state_has_its_own_look_and_toggle() {
        let cases = [
            (PublisherState::Unconfigured, Look::Unconfigured, "Pause publishing", false),
            (PublisherState::Paused, Look::Paused, "Start publishing", true),
            (PublisherState::Publishing, Look::Publishing, "Pause publishing", true),
            (PublisherState::Failed { reason: "x".into(), next_try_ms: None }, Look::Error, "Pause publishing", false),
            (PublisherState::Backoff { reason: "x".into(), next_try_ms: 1 }, Look::Retrying, "Pause publishing", true),
        ];
        for (state, look, label, enabled) in cases {
            let v = view(&status(state.clone()));
            assert_eq!((v.look, v.toggle_label, v.toggle_enabled), (look, label, enabled), "{state:?}");
        }
    }

    #[test]
    fn the_status_line_shows_state_cpu_and_acknowledged_and_errors_are_shortened() {
        let v = view(&status(PublisherState::Publishing));
        assert_eq!(v.status_line, "Publishing · CPU 12.3 % · 42 acknowledged");
        assert_eq!(v.error_line, None);
        let mut s = status(PublisherState::Publishing);
        s.last_value = None;
        s.last_error = Some("e".repeat(100));
        let v = view(&s);
        assert_eq!(v.status_line, "Publishing · CPU – · 42 acknowledged");
        assert_eq!(v.error_line.unwrap().chars().count(), "Last error: ".len() + ERROR_CHARS + 1);
    }

    #[test]
    fn the_level_is_the_load_in_tenths() {
        let level = |v: Option<f64>| view(&Status { last_value: v, ..status(PublisherState::Publishing) }).level;
        assert_eq!(level(None), None);
        assert_eq!(level(Some(f64::NAN)), None);
        assert_eq!([4.9, 5.0, 54.9, 55.0, 100.0, 130.0].map(|v| level(Some(v))), [0, 1, 5, 6, 10, 10].map(Some));
    }

    #[test]
    fn during_a_spell_the_status_line_names_the_top_process_and_low_power_says_so() {
        let mut s = status(PublisherState::Publishing);
        s.spell_top = vec![
            crate::processes::TopProcess { pid: 7, name: "cargo".into(), cpu: 71.0, memory: 1 },
            crate::processes::TopProcess { pid: 8, name: "rustc".into(), cpu: 20.0, memory: 1 },
        ];
        s.low_power = true;
        s.interval_ms = 5000;
        assert_eq!(
            view(&s).status_line,
            "Publishing · CPU 12.3 % · 42 acknowledged · top: cargo 71 % · on battery, every 5 s"
        );
        assert_eq!([500, 2500].map(seconds), ["500 ms", "2.5 s"]);
    }

    #[test]
    fn the_icon_is_drawn_when_its_picture_changes_a_new_level_at_most_once_a_second() {
        let ms = std::time::Duration::from_millis;
        let mut p = IconPacer::default();
        assert!(p.draw(ms(0), Look::Publishing, Some(1)), "the first picture");
        assert!(!p.draw(ms(100), Look::Publishing, Some(1)), "the same picture: nothing to do");
        assert!(!p.draw(ms(200), Look::Publishing, Some(5)), "a new level within the second waits");
        assert!(p.draw(ms(300), Look::Retrying, Some(5)), "a new state shows at once");
        assert!(!p.draw(ms(900), Look::Retrying, Some(7)));
        assert!(p.draw(ms(1300), Look::Retrying, Some(7)), "a second after the last drawing");
        assert!(!p.draw(ms(1400), Look::Retrying, Some(7)));
    }

    /// The icon's pixel at (x, y): RGBA.
    fn pixel(icon: &[u8], x: u32, y: u32) -> [u8; 4] {
        let i = ((y * ICON_SIZE + x) * 4) as usize;
        icon[i..i + 4].try_into().unwrap()
    }

    #[test]
    fn every_look_and_level_draws_its_own_icon() {
        let looks = [Look::Unconfigured, Look::Paused, Look::Publishing, Look::Retrying, Look::Error];
        let mut seen = Vec::new();
        for look in looks {
            for level in [None, Some(0), Some(5), Some(10)] {
                let icon = icon(look, level);
                assert_eq!(icon.len(), (ICON_SIZE * ICON_SIZE * 4) as usize);
                assert!(!seen.contains(&icon), "{look:?} {level:?} looks like another icon");
                seen.push(icon);
            }
        }
        assert_eq!(icon(Look::Error, Some(3)), icon(Look::Error, Some(3)), "the same picture for the same view");
    }

    #[test]
    fn the_gauge_fills_from_the_bottom_in_the_load_colour_and_the_corners_stay_clear() {
        let at = |look, level, y| pixel(&icon(look, Some(level)), 13, y);
        let (bottom, top) = (26, 6);
        assert_eq!(at(Look::Publishing, 10, top), at(Look::Publishing, 10, bottom), "full: one colour top to bottom");
        assert_ne!(at(Look::Publishing, 2, top), at(Look::Publishing, 2, bottom), "20 %: only the bottom is filled");
        let green = at(Look::Publishing, 2, bottom);
        let red = at(Look::Publishing, 9, bottom);
        assert!(green[1] > green[0] && red[0] > red[1], "green when low, red when high: {green:?} {red:?}");
        let grey = at(Look::Paused, 9, bottom);
        assert!(grey[0].abs_diff(grey[2]) < 30, "paused: grey whatever the load: {grey:?}");
        for look in [Look::Publishing, Look::Error] {
            assert_eq!(pixel(&icon(look, Some(5)), 0, 0)[3], 0, "transparent outside the shapes");
        }
        // The badge: nothing while publishing, amber while retrying, red on error.
        let badge = |look| pixel(&icon(look, Some(5)), 24, 20);
        assert_eq!(badge(Look::Publishing)[3], 0);
        let (amber, error) = (badge(Look::Retrying), badge(Look::Error));
        assert!(amber[0] > 200 && amber[1] > 140 && amber[2] < 80, "{amber:?}");
        assert!(error[0] > 200 && error[1] < 90, "{error:?}");
    }

    #[test]
    fn retrying_shows_the_reason_and_the_outbox_counts() {
        let mut s = status(PublisherState::Backoff { reason: "cannot reach the broker".into(), next_try_ms: 1 });
        s.records_queued = 17;
        s.records_dropped = 3;
        let v = view(&s);
        assert_eq!(v.status_line, "Retrying · CPU 12.3 % · 42 acknowledged · 17 waiting · 3 dropped");
        assert_eq!(v.error_line.as_deref(), Some("Last error: cannot reach the broker"));
        let failing = status(PublisherState::Failed { reason: "token rejected".into(), next_try_ms: Some(5) });
        assert!(view(&failing).status_line.starts_with("Error, trying again later · "));
    }
}
