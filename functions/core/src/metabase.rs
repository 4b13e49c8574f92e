//! Metabase versions as image tags carry them, and the record of the version
//! that has run on a stack's database (tags on the DB instance, copied to its
//! snapshots). Metabase migrates its application database on start, and a
//! database migrated by a newer version cannot be run by an older one
//! (Metabase's upgrade guide): mbstack snapshots the database before every
//! version change and refuses a downgrade below what has run.

/// The image that last went out on the stack's database (tag on the instance).
pub const IMAGE_TAG: &str = "mbstack:metabase-image";
/// The highest Metabase version that has run on the database, `0.58.7`.
pub const VERSION_TAG: &str = "mbstack:metabase-version";
/// On a pre-upgrade snapshot: the image it was taken before.
pub const BEFORE_IMAGE_TAG: &str = "mbstack:before-image";
/// On the instance: the image a run's record replaced (`-` for none), which a
/// rollback of that run puts back.
pub const RECORD_BEFORE_TAG: &str = "mbstack:metabase-record-before";
/// `<run> <Unix seconds> <version before | ->`: the run that put the image on
/// record, when (a snapshot older than that holds less than the database now),
/// and the highest version before it (a rollback of that run puts it back).
pub const RECORD_BY_TAG: &str = "mbstack:metabase-record-by";

/// The run, the time and the version before that a `RECORD_BY_TAG` value names.
pub fn record_by(value: &str) -> Option<(&str, i64, &str)> {
    let mut parts = value.split(' ');
    let (run, at) = (parts.next()?, parts.next()?.parse().ok()?);
    Some((run, at, parts.next().unwrap_or("-")))
}

/// A Metabase version: `v0.58.7` and the Enterprise `v1.58.7` are both
/// (58, 7, 0) — the same migrations; `v0.46.6.1` is (46, 6, 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.2 {
            0 => write!(f, "0.{}.{}", self.0, self.1),
            h => write!(f, "0.{}.{}.{h}", self.0, self.1),
        }
    }
}

impl Version {
    /// `0.58.7` (as [`Version`]'s Display writes it, the record's form).
    pub fn parse(text: &str) -> Option<Version> {
        let t = text.strip_prefix('v').unwrap_or(text);
        let parts: Vec<&str> = t.split('.').collect();
        let n = |i: usize| -> Option<u32> {
            let p = parts.get(i)?;
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        };
        match parts.len() {
            3 | 4 if matches!(parts[0], "0" | "1") => Some(Version(
                n(1)?,
                n(2)?,
                if parts.len() == 4 { n(3)? } else { 0 },
            )),
            _ => None,
        }
    }

    /// A form that fits a snapshot's name: `0-58-7`.
    pub fn label(&self) -> String {
        self.to_string().replace('.', "-")
    }
}

/// The Metabase version an image runs, when its tag says it:
/// `metabase/metabase:v0.58.7`, `metabase/metabase-enterprise:v1.58.7`, a
/// mirror's `…/metabase:v0.58.7`. None for a digest, a custom tag or another
/// image: a change to or from such an image is treated as a version change.
pub fn version_of(image: &str) -> Option<Version> {
    let last = image.rsplit('/').next()?;
    if last.contains('@') {
        return None;
    }
    let (repo, tag) = last.split_once(':')?;
    if !repo.contains("metabase") {
        return None;
    }
    Version::parse(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_metabase_tags_only() {
        assert_eq!(
            version_of("metabase/metabase:v0.58.7"),
            Some(Version(58, 7, 0))
        );
        assert_eq!(
            version_of("metabase/metabase-enterprise:v1.58.7"),
            Some(Version(58, 7, 0))
        );
        assert_eq!(
            version_of("metabase/metabase:v0.46.6.1"),
            Some(Version(46, 6, 1))
        );
        assert_eq!(
            version_of("123456789012.dkr.ecr.eu-west-1.amazonaws.com/metabase:v0.57.2"),
            Some(Version(57, 2, 0))
        );
        for none in [
            "metabase/metabase@sha256:0123",
            "metabase/metabase:custom",
            "metabase/metabase:v0.58.7-beta",
            "nginx:1.27.0",
            "metabase/metabase:v2.58.7",
        ] {
            assert_eq!(version_of(none), None, "{none}");
        }
        assert!(Version(58, 7, 0) > Version(57, 12, 3));
        assert!(Version(46, 6, 1) > Version(46, 6, 0));
        assert_eq!(Version::parse("0.58.7"), Some(Version(58, 7, 0)));
        assert_eq!(Version(46, 6, 1).to_string(), "0.46.6.1");
        assert_eq!(Version(58, 7, 0).label(), "0-58-7");
    }
}
