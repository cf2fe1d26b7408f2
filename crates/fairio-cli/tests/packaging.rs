//! What the Debian package ships: the systemd units pass `systemd-analyze verify` (with the
//! binary at the path this build put it), and the hidden `man` command writes the man pages.

mod common;

use std::process::Command;

use common::BIN;

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let dir = std::env::temp_dir().join(format!("fairio-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let here = env!("CARGO_MANIFEST_DIR");
    let mut paths = Vec::new();
    for unit in ["fairio-proxy.service", "fairio-proxy.socket"] {
        let text = std::fs::read_to_string(format!("{here}/packaging/{unit}")).unwrap();
        // The package installs the binary at /usr/bin/fairio; verify checks that it exists.
        let path = dir.join(unit);
        std::fs::write(&path, text.replace("/usr/bin/fairio", BIN)).unwrap();
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("systemd-analyze (Debian package systemd) runs this test; .ci/run installs it");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A misspelt key or value is only a warning to systemd: any output fails the test.
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_misspelt_unit_fails_the_same_check() {
    let dir = std::env::temp_dir().join(format!("fairio-bad-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.service");
    std::fs::write(&path, format!("[Service]\nType=notfy\nExecStart={BIN}\n")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        !out.stderr.is_empty(),
        "systemd-analyze said nothing of Type=notfy"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn man_pages_are_written_for_the_command_and_its_subcommands() {
    let dir = std::env::temp_dir().join(format!("fairio-man-{}", std::process::id()));
    let ok = Command::new(BIN)
        .arg("man")
        .arg(&dir)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let proxy = std::fs::read_to_string(dir.join("fairio-proxy.1")).unwrap();
    for needle in [
        "SIGUSR2",
        "NOTIFY_SOCKET",
        "accept\\-proxy\\-protocol\\-from",
        "drain\\-timeout",
    ] {
        assert!(proxy.contains(needle), "no {needle} in fairio-proxy.1");
    }
    assert!(dir.join("fairio.1").exists() && dir.join("fairio-demo.1").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
