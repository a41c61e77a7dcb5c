//! The power source: whether the machine runs on its battery (low-power mode), and the battery's
//! charge and state (the `battery` metric). Read with starship-battery, which knows Linux, macOS,
//! Windows and the BSDs; a test injects its own [`PowerSource`].

use hostpulse_core::metrics::BatteryState;

/// One reading of the power source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerReading {
    /// Whether the machine runs on its battery.
    pub on_battery: bool,
    /// The first battery's charge, percent, and state (`None`: no battery).
    pub battery: Option<(f64, BatteryState)>,
}

/// Where power readings come from.
pub trait PowerSource: Send + 'static {
    /// The power source now; `None` when it cannot be read.
    fn read(&mut self) -> Option<PowerReading>;
}

/// The machine's batteries, through starship-battery.
pub struct Batteries {
    manager: starship_battery::Manager,
}

impl Batteries {
    /// The machine's batteries; `Err` says why they cannot be read.
    pub fn new() -> Result<Self, String> {
        starship_battery::Manager::new().map(|manager| Batteries { manager }).map_err(|e| e.to_string())
    }
}

fn state(s: starship_battery::State) -> BatteryState {
    use starship_battery::State;
    match s {
        State::Charging => BatteryState::Charging,
        State::Discharging => BatteryState::Discharging,
        State::Empty => BatteryState::Empty,
        State::Full => BatteryState::Full,
        State::Paused => BatteryState::NotCharging,
        _ => BatteryState::Unknown,
    }
}

impl PowerSource for Batteries {
    fn read(&mut self) -> Option<PowerReading> {
        let batteries: Vec<_> = self.manager.batteries().ok()?.flatten().collect();
        let on_battery = batteries.iter().any(|b| state(b.state()).on_battery());
        let battery = batteries.first().map(|b| {
            let charge = f64::from(b.state_of_charge().get::<starship_battery::units::ratio::percent>());
            (charge.clamp(0.0, 100.0), state(b.state()))
        });
        Some(PowerReading { on_battery, battery })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_s_states_map_to_ours_and_only_discharging_is_on_battery() {
        use starship_battery::State as S;
        let cases = [
            (S::Unknown, BatteryState::Unknown),
            (S::Charging, BatteryState::Charging),
            (S::Discharging, BatteryState::Discharging),
            (S::Empty, BatteryState::Empty),
            (S::Full, BatteryState::Full),
            (S::Paused, BatteryState::NotCharging),
        ];
        for (theirs, ours) in cases {
            assert_eq!(state(theirs), ours, "{theirs:?}");
        }
        let on: Vec<_> = cases.iter().filter(|(s, _)| state(*s).on_battery()).map(|(s, _)| *s).collect();
        assert_eq!(on, [S::Discharging, S::Empty]);
    }
}
