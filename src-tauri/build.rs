//! Tauri's build step, with a permission generated for each of our commands so that the
//! capability file can allow exactly those (and nothing else) to the settings window.

fn main() {
    let manifest = tauri_build::AppManifest::new().commands(&[
        "get_state",
        "save_settings",
        "set_token",
        "remove_token",
        "set_publishing",
        "test_connection",
        "set_autostart",
        "get_history",
        "confirm_portal",
        "open_log_folder",
        "get_processes",
    ]);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest)).expect("tauri build step");
}
