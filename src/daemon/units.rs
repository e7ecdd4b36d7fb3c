//! `lifeboat systemd`: a hardened one-shot service and its timer, written from the config
//! file so that the unit names exactly the paths the backup needs and nothing else is
//! writable (ProtectSystem=strict + ReadWritePaths for local destinations and the textfile's
//! directory). The units are text: the CLI prints them or writes them to a directory.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::{Error, Result};

pub const SERVICE_NAME: &str = "lifeboat-backup.service";
pub const TIMER_NAME: &str = "lifeboat-backup.timer";
pub const DEFAULT_TEXTFILE: &str = "/var/lib/node_exporter/textfile_collector/lifeboat.prom";

/// What the units are made from.
pub struct UnitInput<'a> {
    /// The lifeboat binary the service runs (absolute).
    pub exe: &'a Path,
    /// The config file (absolute).
    pub config_path: &'a Path,
    pub config: &'a Config,
    /// systemd's `OnCalendar=` (e.g. `hourly`, `*-*-* *:00/15:00`).
    pub on_calendar: &'a str,
    /// Where the textfile goes (`--metrics-textfile`).
    pub textfile: &'a Path,
}

/// One argument of `ExecStart=`: quoted when it holds spaces or quotes; characters systemd
/// would expand (`%`, `$`) are escaped. Control characters cannot be written at all.
fn arg(flag: &str, s: &str) -> Result<String> {
    if s.chars().any(char::is_control) {
        return Err(Error::flag(
            flag,
            format!("{s:?}: control characters cannot go into a systemd unit"),
        ));
    }
    let escaped = s.replace('%', "%%").replace('$', "$$");
    if escaped.contains([' ', '\t', '"', '\'', '\\', ';']) {
        Ok(format!(
            "\"{}\"",
            escaped.replace('\\', "\\\\").replace('"', "\\\"")
        ))
    } else {
        Ok(escaped)
    }
}

fn path_arg(flag: &str, p: &Path) -> Result<String> {
    let s = p.to_str().ok_or_else(|| {
        Error::flag(
            flag,
            format!("{}: not UTF-8, cannot go into a unit", p.display()),
        )
    })?;
    arg(flag, s)
}

/// The service unit.
pub fn service(u: &UnitInput<'_>) -> Result<String> {
    let c = u.config;
    let mut exec = vec![
        path_arg("lifeboat", u.exe)?,
        "backup".to_string(),
        "--config".to_string(),
        path_arg("--config", u.config_path)?,
    ];
    if c.retention.as_ref().is_some_and(|r| !r.policy().is_empty()) {
        exec.push("--prune".into());
    }
    exec.push("--metrics-textfile".into());
    exec.push(path_arg("--metrics-textfile", u.textfile)?);
    // Writable: local destinations, the textfile's directory. S3 needs only the network.
    let mut writable: Vec<PathBuf> = c
        .destination
        .iter()
        .filter(|d| !d.url.contains("://"))
        .map(|d| PathBuf::from(&d.url))
        .collect();
    writable.push(
        u.textfile
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("/"))
            .to_path_buf(),
    );
    let mut rw = Vec::new();
    for p in &writable {
        rw.push(path_arg("[[destination]] url", p)?);
    }
    // The client certificates must stay readable: ProtectHome=true would hide them if
    // they live under /home or /root.
    let certs: Vec<&PathBuf> = [&c.etcd.cacert, &c.etcd.cert, &c.etcd.key]
        .into_iter()
        .flatten()
        .collect();
    let under_home = certs
        .iter()
        .any(|p| p.starts_with("/home") || p.starts_with("/root") || p.starts_with("/run/user"));
    let mut out = String::new();
    out.push_str(&format!(
        "# {SERVICE_NAME}: written by `lifeboat systemd --config {}`.\n",
        u.config_path.display()
    ));
    out.push_str(
        "# One backup, pruned by [retention], metrics for node_exporter's textfile collector.\n",
    );
    out.push_str("[Unit]\nDescription=lifeboat: back up etcd\n");
    out.push_str("Wants=network-online.target\nAfter=network-online.target\n\n");
    out.push_str("[Service]\nType=oneshot\n");
    out.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    out.push_str("# Hardening: a read-only system; writable only where backups and metrics go\n");
    out.push_str("# (these directories must exist).\n");
    out.push_str("ProtectSystem=strict\n");
    out.push_str(&format!("ReadWritePaths={}\n", rw.join(" ")));
    // The one-shot's host lock lives here (/run/lifeboat).
    out.push_str("RuntimeDirectory=lifeboat\nRuntimeDirectoryPreserve=yes\n");
    out.push_str(if under_home {
        "ProtectHome=read-only\n"
    } else {
        "ProtectHome=true\n"
    });
    out.push_str("PrivateTmp=true\nNoNewPrivileges=true\nPrivateDevices=true\n");
    out.push_str("ProtectKernelTunables=true\nProtectKernelModules=true\nProtectKernelLogs=true\n");
    out.push_str("ProtectControlGroups=true\nProtectClock=true\nProtectHostname=true\n");
    out.push_str("RestrictSUIDSGID=true\nRestrictRealtime=true\nRestrictNamespaces=true\n");
    out.push_str(
        "LockPersonality=true\nMemoryDenyWriteExecute=true\nSystemCallArchitectures=native\n",
    );
    out.push_str("RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nUMask=0077\n");
    if certs.is_empty() {
        out.push_str("# No client certificates in the config.\n");
    } else {
        out.push_str("# The etcd client certificates must be readable by this service's user:\n");
        for p in certs {
            out.push_str(&format!("#   {}\n", p.display()));
        }
    }
    Ok(out)
}

/// The timer unit.
pub fn timer(u: &UnitInput<'_>) -> Result<String> {
    let cal = u.on_calendar.trim();
    super::calendar::check(u.on_calendar)?;
    let delay = u
        .config
        .schedule
        .as_ref()
        .and_then(|s| s.jitter)
        .map_or("5min".to_string(), |j| format!("{}s", j.0.as_secs().max(1)));
    Ok(format!(
        "# {TIMER_NAME}: written by `lifeboat systemd`. Starts {SERVICE_NAME}.\n\
[Unit]\nDescription=lifeboat: back up etcd ({cal})\n\n\
[Timer]\nOnCalendar={cal}\nRandomizedDelaySec={delay}\nPersistent=true\n\n\
[Install]\nWantedBy=timers.target\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_writable_paths_and_quotes_arguments() {
        let cfg = Config::parse(
            "x",
            "[etcd]\ncert = \"/root/pki/c.crt\"\nkey = \"/root/pki/c.key\"\n\
[[destination]]\nurl = \"/var/backups/etcd\"\n[[destination]]\nurl = \"s3://b/p\"\n\
[retention]\nkeep_last = 3\n",
        )
        .unwrap();
        let u = UnitInput {
            exe: Path::new("/usr/local/bin/lifeboat"),
            config_path: Path::new("/etc/life boat/l.toml"),
            config: &cfg,
            on_calendar: "hourly",
            textfile: Path::new("/var/lib/prom/lifeboat.prom"),
        };
        let s = service(&u).unwrap();
        assert!(s.contains("ExecStart=/usr/local/bin/lifeboat backup --config \"/etc/life boat/l.toml\" --prune --metrics-textfile /var/lib/prom/lifeboat.prom\n"), "{s}");
        assert!(
            s.contains("ReadWritePaths=/var/backups/etcd /var/lib/prom\n"),
            "{s}"
        );
        assert!(s.contains("ProtectHome=read-only\n"), "{s}");
        assert!(s.contains("ProtectSystem=strict\n") && s.contains("NoNewPrivileges=true\n"));
        let t = timer(&u).unwrap();
        assert!(t.contains("OnCalendar=hourly\n"), "{t}");
        let bad = UnitInput {
            on_calendar: "hourly\nExecStart=/bin/sh",
            ..u
        };
        assert_eq!(timer(&bad).unwrap_err().exit_code(), crate::ExitCode::Usage);
        assert_eq!(arg("x", "50%$").unwrap(), "50%%$$");
    }
}
