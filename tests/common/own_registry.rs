//! A registry a test starts for itself: Debian's `docker-registry` with a config the test
//! chooses (token auth, TLS), storage in the test's own directory, listening on a free
//! 127.0.0.1 port, killed when the value drops. For tests whose registry setup is the thing
//! under test; plain pulls use the shared `RL_TEST_REGISTRY` that scripts/test.sh seeds.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::{require, TIMEOUT};

pub struct OwnRegistry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub dir: PathBuf,
    child: Child,
}

impl OwnRegistry {
    /// Starts a registry with storage in `dir/storage` and `extra_yaml` (top-level keys such as
    /// `auth:`, or lines under `http:` given by `http_yaml`, indented by two spaces) appended to
    /// its config. Returns None (after `require`) when docker-registry is not installed.
    pub fn start(dir: &Path, http_yaml: &str, extra_yaml: &str) -> Option<OwnRegistry> {
        if !require(super::which("docker-registry").is_some(), "docker-registry is not installed") {
            return None;
        }
        fs::create_dir_all(dir.join("storage")).expect("registry storage dir");
        // A port the kernel says is free now; a clash with a racing process shows as the
        // registry exiting, which fails the test with its log.
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: \"{}\"\n  delete:\n    \
             enabled: true\nhttp:\n  addr: {addr}\n  secret: rl-own-registry\n{http_yaml}{extra_yaml}",
            dir.join("storage").display()
        );
        let config_path = dir.join("config.yml");
        fs::write(&config_path, config).expect("write registry config");
        let log = fs::File::create(dir.join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut reg = OwnRegistry { addr, dir: dir.to_path_buf(), child };
        let start = Instant::now();
        // Ready when it accepts connections (it listens only after loading its config).
        while TcpStream::connect(&reg.addr).is_err() {
            if let Ok(Some(status)) = reg.child.try_wait() {
                panic!("docker-registry exited with {status}:\n{}", reg.log());
            }
            assert!(start.elapsed() < TIMEOUT, "docker-registry did not listen on {}:\n{}", reg.addr, reg.log());
            std::thread::sleep(super::POLL);
        }
        Some(reg)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
