//! Mount discovery: the kernel's mount table (`/proc/self/mountinfo`) read as text and
//! turned into the JuiceFS mounts to sample.
//!
//! Pure: text in, mounts out. Reading `/proc/self/mountinfo` never touches a FUSE mount (the
//! kernel writes the table itself), so the adapter may read it on the async side; every call
//! *into* a mount belongs on a [`BlockingWorker`](crate::worker::BlockingWorker).
//!
//! The format is `proc(5)`'s: `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE
//! SOURCE SUPER_OPTIONS`, with space, tab, newline and backslash in paths written as octal
//! escapes (`\040`, `\011`, `\012`, `\134`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// The fstype a JuiceFS client mount has: FUSE with the subtype `juicefs`.
pub const JUICEFS_FSTYPE: &str = "fuse.juicefs";

/// What JuiceFS puts before the volume name in the mount's source (its FUSE `fsname`).
pub const JUICEFS_SOURCE_PREFIX: &str = "JuiceFS:";

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    /// `MAJ:MIN` of the filesystem: the same for every bind mount of one FUSE connection.
    pub device: String,
    /// Which directory of the filesystem is mounted here (`/` unless a bind mount of a
    /// subdirectory).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// A JuiceFS mount found in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredMount {
    /// Where the client mounted the volume (its `.stats` is at the top of this directory).
    pub mount_point: PathBuf,
    /// The volume name, from the source `JuiceFS:<name>`.
    pub volume: String,
    /// `MAJ:MIN` of the FUSE connection.
    pub device: String,
    /// Other places the same connection is mounted (bind mounts); sampled once, through
    /// `mount_point`, so a hung client costs one blocked thread, not one per bind mount.
    pub bind_mounts: Vec<PathBuf>,
}

/// Decodes `proc(5)`'s octal escapes (`\040` is a space). Bytes, because a path need not be
/// UTF-8. A backslash not followed by three octal digits is kept as it is.
pub fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Parses one line; `None` for a line that does not have the documented shape.
pub fn parse_line(line: &str) -> Option<MountEntry> {
    let mut fields = line.split(' ');
    let mount_id = fields.next()?.parse().ok()?;
    let _parent = fields.next()?;
    let device = fields.next()?.to_string();
    let root = unescape(fields.next()?);
    let mount_point = unescape(fields.next()?);
    let _options = fields.next()?;
    // Optional fields (shared:N, master:N, ...) up to the lone "-".
    fields.by_ref().find(|f| *f == "-")?;
    let fstype = fields.next()?.to_string();
    let source = unescape(fields.next()?).to_string_lossy().into_owned();
    Some(MountEntry {
        mount_id,
        device,
        root,
        mount_point,
        fstype,
        source,
    })
}

/// Every well-formed line of a mount table.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// The volume name in a JuiceFS mount's source (`JuiceFS:myjfs` → `myjfs`).
pub fn volume_of(source: &str) -> &str {
    source.strip_prefix(JUICEFS_SOURCE_PREFIX).unwrap_or(source)
}

/// The JuiceFS mounts of a table, one per FUSE connection, in table order.
///
/// Bind mounts share the connection's device number: the mount whose root is `/` (the
/// client's own mount) is sampled and the others are listed as its `bind_mounts`. When only
/// bind mounts remain (the original was unmounted), the first of them is sampled.
pub fn juicefs_mounts(entries: &[MountEntry]) -> Vec<DiscoveredMount> {
    let mut by_device: BTreeMap<&str, Vec<&MountEntry>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for e in entries.iter().filter(|e| e.fstype == JUICEFS_FSTYPE) {
        let group = by_device.entry(e.device.as_str()).or_default();
        if group.is_empty() {
            order.push(e.device.as_str());
        }
        group.push(e);
    }
    order
        .into_iter()
        .map(|device| {
            let group = &by_device[device];
            let primary = group
                .iter()
                .position(|e| e.root.as_os_str() == "/")
                .unwrap_or(0);
            let main = group[primary];
            DiscoveredMount {
                mount_point: main.mount_point.clone(),
                volume: volume_of(&main.source).to_string(),
                device: device.to_string(),
                bind_mounts: group
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != primary)
                    .map(|(_, e)| e.mount_point.clone())
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mountinfo")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn unescapes_octal_and_keeps_stray_backslashes() {
        assert_eq!(unescape(r"/fs/my\040work"), Path::new("/fs/my work"));
        assert_eq!(unescape(r"/a\011b\012c\134d"), Path::new("/a\tb\nc\\d"));
        assert_eq!(unescape(r"/x\9y\04"), Path::new(r"/x\9y\04"));
        assert_eq!(unescape(r"\"), Path::new(r"\"));
        // Bytes that are not UTF-8 survive.
        assert_eq!(
            unescape(r"/caf\351").as_os_str().as_encoded_bytes(),
            b"/caf\xe9"
        );
    }

    #[test]
    fn parses_optional_fields_and_rejects_garbage() {
        let e = parse_line(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(e.mount_id, 36);
        assert_eq!(e.device, "98:0");
        assert_eq!(e.root, Path::new("/mnt1"));
        assert_eq!(e.mount_point, Path::new("/mnt2"));
        assert_eq!(e.fstype, "ext3");
        assert_eq!(e.source, "/dev/root");
        for bad in [
            "",
            "garbage",
            "36 35 98:0 / /x rw shared:1 ext3 /dev/root rw",
            "x 35 98:0 / /x rw - a b c",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn vibe_box_table_finds_the_workspace() {
        let mounts = juicefs_mounts(&parse_mountinfo(&fixture("vibe-box.txt")));
        assert_eq!(
            mounts,
            vec![DiscoveredMount {
                mount_point: "/fs".into(),
                volume: "vibe".into(),
                device: "0:53".into(),
                bind_mounts: vec![],
            }]
        );
    }

    #[test]
    fn escaped_paths_are_decoded() {
        let mounts = juicefs_mounts(&parse_mountinfo(&fixture("escaped-paths.txt")));
        let points: Vec<&Path> = mounts.iter().map(|m| m.mount_point.as_path()).collect();
        assert_eq!(
            points,
            vec![
                Path::new("/home/alice/My Projects"),
                Path::new("/mnt/tab\there"),
                Path::new("/mnt/back\\slash"),
            ]
        );
        assert_eq!(mounts[0].volume, "team data");
    }

    #[test]
    fn bind_mounts_are_one_connection_sampled_through_the_client_mount() {
        let mounts = juicefs_mounts(&parse_mountinfo(&fixture("bind-mounts.txt")));
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        let m = &mounts[0];
        // The bind mount of a subdirectory comes first in the table; the client's own
        // mount (root "/") is still the one sampled.
        assert_eq!(m.mount_point, Path::new("/fs"));
        assert_eq!(
            m.bind_mounts,
            vec![
                PathBuf::from("/home/alice/work"),
                PathBuf::from("/srv/fs-again")
            ]
        );
    }

    #[test]
    fn several_volumes_in_table_order_and_other_fuse_ignored() {
        let mounts = juicefs_mounts(&parse_mountinfo(&fixture("several-volumes.txt")));
        let got: Vec<(&str, &str)> = mounts
            .iter()
            .map(|m| (m.mount_point.to_str().unwrap(), m.volume.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/fs", "vibe"),
                ("/data/models", "models"),
                ("/mnt/scratch", "scratch")
            ]
        );
    }

    #[test]
    fn only_bind_mounts_left_samples_the_first() {
        let text = "90 1 0:70 /sub /a rw - fuse.juicefs JuiceFS:v rw\n\
                    91 1 0:70 /other /b rw - fuse.juicefs JuiceFS:v rw\n";
        let mounts = juicefs_mounts(&parse_mountinfo(text));
        assert_eq!(mounts[0].mount_point, Path::new("/a"));
        assert_eq!(mounts[0].bind_mounts, vec![PathBuf::from("/b")]);
    }
}
