//! `alert-runner webhook-secret show|rotate`: created on first use, stable, rotated with the
//! old secret still reported during the grace period.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_alert-runner");

fn secret(db: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(BIN)
        .arg("webhook-secret")
        .args(args)
        .args([
            "--user",
            "00000000-0000-4000-8000-00000000abcd",
            "--database-url",
            db,
        ])
        .output();
    let Ok(out) = out else { panic!("run") };
    assert!(out.status.success(), "{out:?}");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn show_creates_once_and_rotate_keeps_the_old_one_signing() {
    let dir = std::env::temp_dir().join(format!("ar-secret-{}", uuid::Uuid::new_v4()));
    assert!(std::fs::create_dir_all(&dir).is_ok());
    let db = format!("sqlite://{}", dir.join("s.db").display());
    let (first, _) = secret(&db, &["show"]);
    let (again, _) = secret(&db, &["show"]);
    let (rotated, note) = secret(&db, &["rotate", "--grace", "1h"]);
    let (after, after_note) = secret(&db, &["show"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(first.starts_with("whsec_") && first.len() > 40, "{first}");
    assert_eq!(first, again, "created on first use, then stable");
    assert_ne!(rotated, first);
    assert!(
        note.contains(&first),
        "the previous secret is reported: {note}"
    );
    assert_eq!(after, rotated);
    assert!(
        after_note.contains(&first),
        "still signing within the grace period"
    );
}
