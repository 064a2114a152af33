//! Helpers shared by the backend and frontend integration tests.
#![allow(dead_code)]

pub mod holder;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use ringwork_device::model::Device;
use ringwork_vhost_user::{OnDisconnect, Server};

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh scratch directory, unique per test binary, tag, process and
/// thread.
pub fn temp_dir(tag: &str) -> TempDir {
    let p = std::env::temp_dir().join(format!(
        "ringwork-vu-{}-{tag}-{}-{:?}",
        env!("CARGO_CRATE_NAME"),
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

/// Serves `dev` on `path` in a thread until the first frontend leaves.
pub fn serve(path: &Path, dev: Arc<dyn Device>) -> JoinHandle<()> {
    let mut server = Server::bind(path).unwrap();
    std::thread::spawn(move || {
        let _ = server.serve(dev, OnDisconnect::Exit);
    })
}
