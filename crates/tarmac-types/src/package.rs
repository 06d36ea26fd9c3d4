use std::fmt;
use std::str::FromStr;

/// Why a package name or id was rejected. Messages follow pkgpanda's grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageIdError {
    #[error(
        "invalid package id `{id}`: a package id is `<name>--<version>` and may only contain one `--`"
    )]
    NotAnId { id: String },
    #[error(
        "invalid package name `{name}`: must match ^[a-zA-Z0-9@_+][a-zA-Z0-9@._+\\-]*$ (no leading `.` or `-`, no `--`, no trailing `-`)"
    )]
    BadName { name: String },
    #[error(
        "invalid package version `{version}` in `{id}`: must match ^[a-zA-Z0-9@_+:.]+$ (no `-`)"
    )]
    BadVersion { id: String, version: String },
}

/// A package name, e.g. `etcd`. Validated with pkgpanda's regex, plus the
/// effective rules (no `--` inside, no trailing `-`) so every name can form an id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageName(String);

impl PackageName {
    pub fn new(name: impl Into<String>) -> Result<Self, PackageIdError> {
        let name = name.into();
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '_' | '+'));
        let rest_ok =
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '+' | '-'));
        if !first_ok || !rest_ok || name.contains("--") || name.ends_with('-') {
            return Err(PackageIdError::BadName { name });
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PackageName {
    type Err = PackageIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A package id `name--version`, e.g. `etcd--3f2a…`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageId {
    name: PackageName,
    version: String,
}

fn version_ok(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '_' | '+' | ':' | '.'))
}

impl PackageId {
    pub fn parse(id: &str) -> Result<Self, PackageIdError> {
        let parts: Vec<&str> = id.split("--").collect();
        if parts.len() != 2 {
            return Err(PackageIdError::NotAnId { id: id.to_owned() });
        }
        let name = PackageName::new(parts[0])?;
        if !version_ok(parts[1]) {
            return Err(PackageIdError::BadVersion {
                id: id.to_owned(),
                version: parts[1].to_owned(),
            });
        }
        Ok(Self {
            name,
            version: parts[1].to_owned(),
        })
    }

    pub fn from_parts(name: &PackageName, version: &str) -> Result<Self, PackageIdError> {
        Self::parse(&format!("{name}--{version}"))
    }

    /// True when `s` looks like an id (exactly one `--`), as pkgpanda's `is_id`.
    pub fn is_id(s: &str) -> bool {
        s.matches("--").count() == 1
    }

    pub fn name(&self) -> &PackageName {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}--{}", self.name, self.version)
    }
}

impl FromStr for PackageId {
    type Err = PackageIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
string_serde!(PackageId);
string_serde!(PackageName);
pub(crate) use string_serde;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_ids() {
        let id = PackageId::parse("mesos--0.22.0").unwrap();
        assert_eq!(id.name().as_str(), "mesos");
        assert_eq!(id.version(), "0.22.0");
        assert_eq!(id.to_string(), "mesos--0.22.0");
        assert!(PackageId::parse("a--b:c.d").is_ok());
        assert!(PackageId::parse("tarmac-config--setup_abc123").is_ok());
    }

    #[test]
    fn rejects_invalid_ids() {
        for bad in [
            "a--b--c",
            "packageversion",
            "package---version",
            "invalid---package",
            "--x",
        ] {
            assert!(PackageId::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(matches!(
            PackageId::parse("foo--1-2"),
            Err(PackageIdError::BadVersion { .. })
        ));
        assert!(matches!(
            PackageId::parse(".foo--1"),
            Err(PackageIdError::BadName { .. })
        ));
        assert!(matches!(
            PackageId::parse("-foo--1"),
            Err(PackageIdError::BadName { .. })
        ));
    }

    #[test]
    fn names() {
        assert!(PackageName::new("node-exporter").is_ok());
        assert!(PackageName::new("foo-").is_err());
        assert!(PackageName::new("a--b").is_err());
        assert!(PackageName::new("").is_err());
    }

    #[test]
    fn serde_roundtrip() {
        let id = PackageId::parse("etcd--abc").unwrap();
        let s = serde_json::to_string(&id).unwrap();
        assert_eq!(s, "\"etcd--abc\"");
        let back: PackageId = serde_json::from_str(&s).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<PackageId>("\"nope\"").is_err());
    }
}
