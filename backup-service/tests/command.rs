//! The status command run for real: fake commands (shell scripts) for every state, a hang,
//! garbage, a failing command and a missing program.

use backup_service::{ExportState, GateError, ImportState, ParseError, Readiness, StatusCommand};
use failover_core::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes a shell script into `dir` and returns its path. Tests run it as `/bin/sh PATH`,
/// never by executing the file itself: a file just written can fail to exec with ETXTBSY
/// ("Text file busy") while another test thread is between `fork` and `exec` and still
/// holds the write descriptor. `/bin/sh` only reads the script, so no timing can break it.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    p
}

fn cmd(p: &Path, timeout: Duration) -> StatusCommand {
    StatusCommand::new(sh(p), timeout).unwrap()
}

/// The argv that runs script `p`.
fn sh(p: &Path) -> Vec<String> {
    vec!["/bin/sh".into(), p.display().to_string()]
}

/// Generous: these commands finish at once unless they hang on purpose.
const LONG: Duration = Duration::from_secs(60);

fn printing(export: &str, import: &str) -> String {
    format!(
        r#"cat <<'JSON'
{{"PoolFqdn":"pool01.contoso.com","BackupModules":[{{"Identity":"CentralMgmt.CMSMaster","ExportStatus":"{export}","ImportStatus":"{import}"}}]}}
JSON"#
    )
}

#[tokio::test]
async fn every_documented_state_is_read_from_a_real_command() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("FinalState", ExportState::FinalState, Readiness::Ready),
        (
            "SteadyState",
            ExportState::SteadyState,
            Readiness::Copying(ExportState::SteadyState),
        ),
        (
            "NonSteadyState",
            ExportState::NonSteadyState,
            Readiness::Copying(ExportState::NonSteadyState),
        ),
    ];
    for (name, state, after) in cases {
        let p = script(dir.path(), name, &printing(name, "NormalState"));
        let s = cmd(&p, LONG).run().await.unwrap();
        let m = s.cms().unwrap();
        assert_eq!(m.export, state);
        assert_eq!(m.import, ImportState::NormalState);
        assert_eq!(m.after_fence(), after, "{name}");
    }
    for name in ["NotInitialized", "ErrorState"] {
        let p = script(dir.path(), name, &printing(name, "ErrorState"));
        let s = cmd(&p, LONG).run().await.unwrap();
        assert_eq!(s.cms().unwrap().import, ImportState::ErrorState);
        assert!(matches!(
            s.cms().unwrap().after_fence(),
            Readiness::Blocked(_)
        ));
    }
}

#[tokio::test]
async fn a_hanging_command_is_killed_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("still-running");
    // The script records its PID and then never finishes on its own.
    let p = script(
        dir.path(),
        "hang",
        &format!("echo $$ > {}\nexec sleep 100000", marker.display()),
    );
    let e = cmd(&p, Duration::from_millis(300)).run().await.unwrap_err();
    assert!(matches!(e, GateError::Timeout { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.to_string().contains("killed"), "{e}");
    // The process was killed: its PID no longer names a live process (a zombie awaiting
    // its reaper counts as dead). A script killed before it wrote its PID never writes it.
    let Ok(pid) = std::fs::read_to_string(&marker) else {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!marker.exists(), "the command ran on after its timeout");
        return;
    };
    let proc = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
    let mut alive = true;
    for _ in 0..400 {
        alive = std::fs::read_to_string(&proc)
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!alive, "the hanging command {pid} was not killed");
}

#[tokio::test]
async fn garbage_output_is_refused_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "garbage",
        "echo 'WARNING: remoting session opened' >&2\necho 'Identity ExportStatus'\necho '-------- ------------'",
    );
    let e = cmd(&p, LONG).run().await.unwrap_err();
    match &e {
        GateError::Output { error, stderr, .. } => {
            assert!(matches!(error, ParseError::NotJson { .. }));
            assert!(stderr.contains("remoting session opened"));
        }
        other => panic!("{other}"),
    }
    assert_eq!(e.kind(), ErrorKind::Fatal);
    assert!(e.to_string().contains("ConvertTo-Json"), "{e}");
}

#[tokio::test]
async fn a_failing_command_is_refused_with_its_exit_status_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "fails",
        "echo 'Get-CsBackupServiceStatus : Access is denied' >&2\nexit 3",
    );
    let e = cmd(&p, LONG).run().await.unwrap_err();
    assert!(
        matches!(&e, GateError::Failed { status, stderr, .. } if status.contains('3') && stderr.contains("Access is denied")),
        "{e}"
    );
    assert!(e.to_string().contains("Access is denied"));
    assert_eq!(e.kind(), ErrorKind::Fatal);
}

#[tokio::test]
async fn a_missing_program_and_an_empty_argv_are_clear_errors() {
    let e = StatusCommand::new(vec!["/nonexistent/pwsh".into()], LONG)
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(e, GateError::Spawn { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/pwsh"));
    assert!(StatusCommand::new(vec![], LONG).is_err());
    assert!(StatusCommand::new(vec!["  ".into()], LONG).is_err());
}

#[tokio::test]
async fn arguments_are_passed_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    // The script prints the status only when its single argument arrives unsplit and
    // unexpanded.
    let p = script(
        dir.path(),
        "args",
        &format!(
            "[ \"$#\" = 1 ] && [ \"$1\" = 'a b; $(touch pwned) *' ] || exit 9\n{}",
            printing("FinalState", "NormalState")
        ),
    );
    let c = StatusCommand::new(
        [sh(&p), vec!["a b; $(touch pwned) *".into()]].concat(),
        LONG,
    )
    .unwrap()
    .with_pool("pool01.contoso.com");
    let s = c.run().await.unwrap();
    assert_eq!(s.cms().unwrap().export, ExportState::FinalState);
    assert!(!Path::new("pwned").exists());
}

#[tokio::test]
async fn as_the_core_gate_it_reads_the_cms_module_and_carries_stderr() {
    use failover_core::BackupServiceGate;
    let dir = tempfile::tempdir().unwrap();
    let ok = script(dir.path(), "ok", &printing("SteadyState", "NormalState"));
    let gate = cmd(&ok, LONG);
    assert_eq!(gate.describe(), sh(&ok));
    assert_eq!(gate.timeout(), LONG);
    let m = gate.cms_status().await.unwrap();
    assert_eq!(m.export, ExportState::SteadyState);

    let failing = script(
        dir.path(),
        "fail",
        "echo 'Permission denied (publickey)' >&2\nexit 255",
    );
    let e = cmd(&failing, LONG).cms_status().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fatal);
    assert!(e.message.contains("Permission denied (publickey)"), "{e}");

    let other = script(
        dir.path(),
        "other",
        r#"echo '[{"Identity":"ConfServices.DataConf","ExportStatus":"FinalState","ImportStatus":"NormalState"}]'"#,
    );
    let e = cmd(&other, LONG).cms_status().await.unwrap_err();
    assert!(e.message.contains("no CentralMgmt.CMSMaster module"), "{e}");

    let hang = script(dir.path(), "hang2", "exec sleep 100000");
    let e = cmd(&hang, Duration::from_millis(200))
        .cms_status()
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
}
