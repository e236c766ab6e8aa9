//! A full disk (a small tmpfs as the data directory): writes fail cleanly while it is full,
//! `/ready` says so, and once space is freed writes work again without a restart; nothing
//! acknowledged is lost and nothing refused is there after a restart.
//!
//! Mounting a tmpfs needs root, as the test command runs in CI; elsewhere the test fails loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::Server;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mounting a tmpfs needs root: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system of `dir` but for about `leave_kib` KiB, with a ballast file.
fn fill(dir: &Path, leave_kib: u64) -> PathBuf {
    let ballast = dir.join("ballast");
    let free = Command::new("df").args(["--output=avail", "-k"]).arg(dir).output().unwrap();
    let free: u64 = String::from_utf8_lossy(&free.stdout).lines().nth(1).unwrap().trim().parse().unwrap();
    let size = free.saturating_sub(leave_kib) * 1024;
    std::fs::write(&ballast, vec![0u8; size as usize]).unwrap();
    ballast
}

async fn wait_ready(s: &Server, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = crate::util::Resp::from(s.client.get(format!("{}/ready", s.base)).send().await.unwrap()).await;
        let (status, body) = (r.status, r.json());
        if status == want || Instant::now() > deadline {
            assert_eq!(status, want, "/ready: {body}");
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Takes every byte left on the file system of `dir`.
fn fill_rest(dir: &Path) -> PathBuf {
    let rest = dir.join("rest");
    let mut f = std::fs::File::create(&rest).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    let _ = std::io::Write::write_all(&mut f, &[0]);
    rest
}

/// Writes entities with 2 KB values until the store refuses; returns the ids acknowledged.
async fn write_until_refused(s: &Server, prefix: &str) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0..20_000 {
        let id = format!("urn:ngsi-ld:Sensor:{prefix}{i}");
        let r = s.post("/entities", &json!({"id": id, "type": "Sensor", "p": "x".repeat(2000)})).await;
        match r.status {
            201 => acked.push(id),
            503 => {
                r.assert_problem(503, "InternalError");
                assert!(r.header("retry-after").is_some());
                return acked;
            }
            other => panic!("write {i}: {other} {}", r.text),
        }
    }
    panic!("the disk never filled up");
}

/// Runs the scenario with a free-space reserve of `reserve_mib` (0: the storage engine itself
/// hits the full disk and is reopened).
async fn full_disk(reserve_mib: &str) {
    let fs = Tmpfs::mount(24);
    let data = tempfile::TempDir::new_in(fs.path()).unwrap();
    let mut s = Server::start_in(data, &["--min-free-disk-mb", reserve_mib]).await;
    wait_ready(&s, 200).await;
    let ballast = fill(fs.path(), 3 << 10);
    let mut acked = write_until_refused(&s, "a").await;
    assert!(!acked.is_empty());
    // Whatever room the refused write left is taken too: from now on the disk is full.
    let rest = fill_rest(fs.path());
    for i in 0..3 {
        let id = format!("urn:ngsi-ld:Sensor:b{i}");
        let r = s.post("/entities", &json!({"id": id, "type": "Sensor", "p": "x".repeat(2000)})).await;
        match r.status {
            201 => acked.push(id),
            503 => {}
            other => panic!("{other} {}", r.text),
        }
    }
    if reserve_mib != "0" {
        // (Without a reserve, each reopening of the engine frees the bytes of the write that
        // failed, so the store is briefly ready again before the next write fails.)
        let state = wait_ready(&s, 503).await;
        assert_eq!(state["status"], "unwritable");
        let r = s.post("/entities", &json!({"id": "urn:ngsi-ld:Sensor:refused", "type": "Sensor"})).await;
        r.assert_problem(503, "InternalError");
    }
    // Reads go on.
    assert_eq!(s.get(&format!("/entities/{}", acked[0])).await.status, 200);
    std::fs::remove_file(rest).unwrap();
    std::fs::remove_file(ballast).unwrap();
    wait_ready(&s, 200).await;
    let r = s.post("/entities", &json!({"id": "urn:ngsi-ld:Sensor:after", "type": "Sensor"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Restarted, the store holds exactly what was acknowledged.
    let data = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    drop(s);
    let s2 = Server::start_in(data, &[]).await;
    let count = s2.call("GET", "/entities?type=Sensor&count=true&limit=0", None, &[]).await;
    assert_eq!(count.header("ngsild-results-count").unwrap(), (acked.len() + 1).to_string());
    for id in &acked {
        assert_eq!(s2.get(&format!("/entities/{id}")).await.status, 200, "{id} was acknowledged");
    }
    assert_eq!(s2.get("/entities/urn:ngsi-ld:Sensor:refused").await.status, 404);
}

/// Regression (issue 19): a full disk poisoned the storage engine; every later write failed
/// until a restart while /health said ok.
#[tokio::test]
async fn a_full_disk_engine_recovers_without_a_restart() {
    full_disk("0").await;
}

/// With the default kind of reserve, writes are refused before the engine sees a full disk.
#[tokio::test]
async fn writes_are_refused_below_the_reserve_and_taken_again() {
    full_disk("2").await;
}

/// When the write path cannot continue (here: the engine failed on a full disk and its files are
/// then gone, so reopening it would start an empty store), the process exits non-zero for its
/// supervisor to restart it, instead of serving writes that can only fail.
#[tokio::test]
async fn a_store_that_cannot_recover_exits_non_zero() {
    let fs = Tmpfs::mount(24);
    let data = tempfile::TempDir::new_in(fs.path()).unwrap();
    let engine = data.path().join("engine");
    let mut s = Server::start_in(data, &["--min-free-disk-mb", "0"]).await;
    let _ballast = fill(fs.path(), 3 << 10);
    write_until_refused(&s, "a").await;
    std::fs::remove_dir_all(&engine).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        // Writes keep the writer retrying; it must give up for good, not start an empty store.
        let body = json!({"id": "urn:ngsi-ld:Sensor:x", "type": "Sensor"}).to_string();
        let _ = s.client.post(s.url("/entities")).header("Content-Type", "application/json").body(body).send().await;
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "haskap did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "{status}");
}
