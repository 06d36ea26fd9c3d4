//! Support material shared by the CLI and the web GUI: the log archive.

use std::io::Write;
use std::path::Path;

/// Write `state/runs` and `state/logs` (every run journal and host log) into `out` as a
/// .tar.zst, for support.
pub fn write_log_archive<W: Write>(state: &Path, out: W) -> std::io::Result<()> {
    let enc = zstd::Encoder::new(out, 3)?.auto_finish();
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    for sub in ["runs", "logs"] {
        let d = state.join(sub);
        if d.is_dir() {
            tar.append_dir_all(sub, &d)?;
        }
    }
    tar.into_inner()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_holds_runs_and_logs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("runs")).unwrap();
        std::fs::create_dir_all(d.path().join("logs/r1/deploy")).unwrap();
        std::fs::write(d.path().join("runs/r1.json"), "{}").unwrap();
        std::fs::write(d.path().join("logs/r1/deploy/10.0.0.1.log"), "hello").unwrap();
        std::fs::write(d.path().join("lock"), "x").unwrap();
        let mut buf = Vec::new();
        write_log_archive(d.path(), &mut buf).unwrap();
        let dec = zstd::Decoder::new(&buf[..]).unwrap();
        let mut names: Vec<String> = tar::Archive::new(dec)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") || n.ends_with(".log"))
            .collect();
        names.sort();
        assert_eq!(names, vec!["logs/r1/deploy/10.0.0.1.log", "runs/r1.json"]);
    }
}
