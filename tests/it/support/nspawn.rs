//! A Debian bookworm system booted with systemd in `systemd-nspawn`, for the systemd test
//! (tests/it/systemd.rs): a throwaway overlay on the root `.ci/bookworm.sh` caches once
//! per machine, booted as a container that shares the host's network, and commands run
//! inside it with `nsenter` into its init's namespaces.
//!
//! ```text
//! /var/cache/postern-test/bookworm             the cached root (read-only lower layer)
//! /tmp/postern-nspawn-XXXX/upper work root     overlay: root = cache + this run's changes
//! systemd-nspawn -D .../root -b --register=no --keep-unit -q      (console in console.log)
//! nsenter -t <pid of the container's systemd> -a /bin/sh -c '<script>'
//! ```
//!
//! The host sees the container's files under [`Container::path`]. Dropping the
//! [`Container`] halts it (SIGTERM to systemd-nspawn makes its systemd shut down), then
//! unmounts the overlay and removes the run's directory, so the cache stays clean.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where `.ci/bookworm.sh` puts the root unless `BOOKWORM_ROOT` says otherwise.
pub const DEFAULT_ROOT: &str = "/var/cache/postern-test/bookworm";
/// How long the container may take to boot (`is-system-running --wait`).
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long its shutdown may take before systemd-nspawn is killed.
const HALT_TIMEOUT: Duration = Duration::from_secs(30);
/// Each run's directory in the temp dir starts with this.
const RUN_PREFIX: &str = "postern-nspawn-";

/// Halts and removes what a killed earlier run left behind (its container would keep
/// Dovecot and Postfix on their ports): run directories whose owner, the test process
/// that made them, is gone. A reused pid only makes one look alive: then it is kept.
fn clean_stale_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for dir in entries.flatten().map(|e| e.path()) {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !name.starts_with(RUN_PREFIX) {
            continue;
        }
        let owner = std::fs::read_to_string(dir.join("owner")).unwrap_or_default();
        match owner.trim().parse::<u32>() {
            Ok(pid) if !Path::new(&format!("/proc/{pid}")).exists() => {}
            _ => continue,
        }
        let root = dir.join("root");
        let wanted = format!("-D\0{}\0", root.display());
        let procs = std::fs::read_dir("/proc").into_iter().flatten().flatten();
        for pid in procs.filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.starts_with("systemd-nspawn\0") && cmdline.contains(&wanted) {
                // As Drop does: SIGTERM makes the container shut down, then nspawn exits.
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let deadline = Instant::now() + HALT_TIMEOUT;
                while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        let _ = Command::new("umount").arg("-l").arg(&root).status();
        let still_mounted = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(&root.display().to_string()));
        if !still_mounted {
            eprintln!("removing {} left by an earlier run", dir.display());
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Whether the tools to boot a container are on this machine.
pub fn tools_present() -> bool {
    ["systemd-nspawn", "debootstrap", "nsenter"]
        .iter()
        .all(|tool| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// The cached bookworm root; panics (failing the test) with what to run when it is missing.
pub fn cached_root() -> PathBuf {
    let dir = std::env::var_os("BOOKWORM_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    assert!(
        dir.join(".postern-ready").exists(),
        "the systemd test needs the Debian bookworm root at {} and it is missing: run \
         `sudo bash .ci/bookworm.sh` once (CI runs it), or set BOOKWORM_ROOT",
        dir.display()
    );
    dir
}

/// A booted container; halted and removed on drop.
pub struct Container {
    /// This run's directory: `upper/`, `work/`, `root/` (the overlay), `console.log`.
    /// Kept (not removed) if the overlay could not be unmounted.
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    root: PathBuf,
    nspawn: Option<Child>,
    /// The container's PID 1 (its systemd), as the host sees it.
    init: i32,
    mounted: bool,
}

impl Container {
    /// Mounts an overlay on `cache`, lets `prepare` write into the container's root
    /// before it boots, boots it, and waits until its systemd reports the boot done.
    pub fn boot(cache: &Path, prepare: impl FnOnce(&Path)) -> Container {
        clean_stale_runs();
        let dir = tempfile::Builder::new()
            .prefix(RUN_PREFIX)
            .tempdir()
            .expect("tempdir");
        std::fs::write(dir.path().join("owner"), std::process::id().to_string())
            .expect("write owner");
        let root = dir.path().join("root");
        for d in ["upper", "work", "root"] {
            std::fs::create_dir(dir.path().join(d)).expect("mkdir overlay dirs");
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            cache.display(),
            dir.path().join("upper").display(),
            dir.path().join("work").display()
        );
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&root)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t overlay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = Container {
            root: root.clone(),
            dir_path: dir.path().to_owned(),
            dir: Some(dir),
            nspawn: None,
            init: 0,
            mounted: true,
        };
        prepare(&root);

        let console = std::fs::File::create(c.dir_path.join("console.log")).expect("console");
        let child = Command::new("systemd-nspawn")
            .arg("-D")
            .arg(&root)
            .args(["-b", "--register=no", "--keep-unit", "-q"])
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup"))
            .stderr(console)
            .spawn()
            .expect("run systemd-nspawn (Debian package systemd-container)");
        let nspawn_pid = child.id();
        c.nspawn = Some(child);
        c.init = c.wait_for_init(nspawn_pid);
        c.wait_booted();
        c
    }

    /// The host path of `path` inside the container.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Runs `script` with `/bin/sh -e` inside the container, as root, with a plain
    /// environment and no standard input.
    pub fn sh(&self, script: &str) -> Output {
        self.command(script)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    /// The same, with `input` on standard input (passwords stay out of the command line).
    pub fn sh_stdin(&self, script: &str, input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nsenter");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait nsenter")
    }

    /// Runs `script` (see [`Container::sh`]); fails the test, showing the script and
    /// its output, unless it succeeds. Returns stdout and stderr.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        let text = output_text(&out);
        assert!(
            out.status.success(),
            "in the container, `{script}` failed ({}):\n{text}",
            out.status
        );
        text
    }

    /// Stdout of a succeeding `script`, trimmed.
    pub fn stdout(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the container, `{script}` failed ({}):\n{}",
            out.status,
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `systemctl show -p <property> --value <unit>`.
    pub fn property(&self, unit: &str, property: &str) -> String {
        self.stdout(&format!("systemctl show -p {property} --value {unit}"))
    }

    /// The container's console output so far (systemd's boot and shutdown messages).
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir_path.join("console.log")).unwrap_or_default()
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.init.to_string())
            .args(["-a", "/bin/sh", "-e", "-c", script])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("HOME", "/root")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .current_dir("/");
        cmd
    }

    /// The container's init: the child of systemd-nspawn once it has exec'd systemd.
    fn wait_for_init(&mut self, nspawn_pid: u32) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(status))) = self.nspawn.as_mut().map(Child::try_wait) {
                panic!("systemd-nspawn exited with {status}:\n{}", self.console());
            }
            let children =
                std::fs::read_to_string(format!("/proc/{nspawn_pid}/task/{nspawn_pid}/children"))
                    .unwrap_or_default();
            if let Some(pid) = children
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .find(|pid| {
                    // Until it execs the container's init, the child is systemd-nspawn.
                    std::fs::read_link(format!("/proc/{pid}/exe"))
                        .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "systemd"))
                })
            {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "no systemd under systemd-nspawn after 20 s:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the container's systemd has finished booting (running or degraded).
    fn wait_booted(&self) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let out = self.sh("systemctl is-system-running");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            match state.as_str() {
                "running" => return,
                "degraded" => {
                    let failed = self.sh("systemctl --failed --no-legend --plain");
                    panic!(
                        "the container booted degraded: {}\n{}",
                        output_text(&failed),
                        self.console()
                    );
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "the container did not finish booting within {BOOT_TIMEOUT:?} (state \
                 {state:?}):\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn halt(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + HALT_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.mounted {
            let unmounted = Command::new("umount")
                .arg(&self.root)
                .status()
                .is_ok_and(|s| s.success())
                || Command::new("umount")
                    .arg("-l")
                    .arg(&self.root)
                    .status()
                    .is_ok_and(|s| s.success());
            if unmounted {
                self.mounted = false;
            } else {
                eprintln!("could not unmount {}", self.root.display());
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let journal = self.sh("journalctl -b --no-pager -n 300");
            eprintln!(
                "--- container journal (last 300 lines) ---\n{}",
                output_text(&journal)
            );
        }
        self.halt();
        if self.mounted {
            // Removing the directory through a mounted overlay would reach into it: keep it.
            if let Some(dir) = self.dir.take() {
                eprintln!("left {} behind (still mounted)", dir.keep().display());
            }
        }
    }
}

/// Stdout then stderr of a finished command.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
