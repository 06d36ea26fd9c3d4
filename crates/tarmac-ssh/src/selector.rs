//! Host selectors: `10.0.0.1,10.0.1.*,@master,!10.0.0.7`.
//!
//! A comma list of items. `@role` selects a role (`@master`, `@agent`, `@agent_public`),
//! a word with `*`/`?` is a glob over the host (with or without port), anything else names
//! one host. `!item` excludes. Without any positive item every host is selected. A plain
//! host name that matches nothing is an error, so a typo never silently selects nothing.

use tarmac_types::Role;

use crate::known_hosts::wildcard_match;
use crate::target::Target;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    All,
    Role(Role),
    Glob(String),
    Host(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    include: Vec<Item>,
    exclude: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("empty item in host selector `{0}`")]
    Empty(String),
    #[error("unknown role `{0}` in host selector: expected @master, @agent or @agent_public")]
    Role(String),
    #[error("no host matches `{item}` (hosts: {known})")]
    NoMatch { item: String, known: String },
    #[error("the selector `{0}` matches no host")]
    Nothing(String),
}

impl tarmac_types::error_report::Hint for SelectorError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            SelectorError::NoMatch { .. } => {
                Some("check the spelling, or use a glob such as 10.0.0.*".into())
            }
            _ => None,
        }
    }
}

fn parse_item(s: &str, whole: &str) -> Result<Item, SelectorError> {
    if s.is_empty() {
        return Err(SelectorError::Empty(whole.to_owned()));
    }
    if s == "all" || s == "*" {
        return Ok(Item::All);
    }
    if let Some(r) = s.strip_prefix('@') {
        return r
            .parse::<Role>()
            .map(Item::Role)
            .map_err(|_| SelectorError::Role(r.to_owned()));
    }
    if s.contains(['*', '?']) {
        return Ok(Item::Glob(s.to_owned()));
    }
    Ok(Item::Host(s.to_owned()))
}

impl Item {
    fn matches(&self, t: &Target) -> bool {
        match self {
            Item::All => true,
            Item::Role(r) => t.role == Some(*r),
            Item::Glob(g) => {
                wildcard_match(g, t.addr.host()) || wildcard_match(g, &t.addr.to_string())
            }
            Item::Host(h) => {
                h == t.addr.host()
                    || *h == t.addr.to_string()
                    || h.trim_start_matches('[').trim_end_matches(']') == t.addr.host()
            }
        }
    }
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        for raw in s.split(',').map(str::trim) {
            match raw.strip_prefix('!') {
                Some(rest) => exclude.push(parse_item(rest.trim(), s)?),
                None => include.push(parse_item(raw, s)?),
            }
        }
        Ok(Selector { include, exclude })
    }

    /// Every host.
    pub fn all() -> Selector {
        Selector {
            include: vec![Item::All],
            exclude: vec![],
        }
    }

    /// The hosts of one role.
    pub fn role(role: Role) -> Selector {
        Selector {
            include: vec![Item::Role(role)],
            exclude: vec![],
        }
    }

    pub fn matches(&self, t: &Target) -> bool {
        (self.include.is_empty() || self.include.iter().any(|i| i.matches(t)))
            && !self.exclude.iter().any(|i| i.matches(t))
    }

    /// The selected hosts, in order. Errors when a named host is not among `targets` or when
    /// nothing is selected.
    pub fn select(&self, targets: &[Target]) -> Result<Vec<Target>, SelectorError> {
        for item in self.include.iter().chain(&self.exclude) {
            if let Item::Host(h) = item
                && !targets.iter().any(|t| item.matches(t))
            {
                let known: Vec<String> =
                    targets.iter().take(5).map(|t| t.addr.to_string()).collect();
                let more = if targets.len() > 5 { ", …" } else { "" };
                return Err(SelectorError::NoMatch {
                    item: h.clone(),
                    known: format!("{}{more}", known.join(", ")),
                });
            }
        }
        let out: Vec<Target> = targets
            .iter()
            .filter(|t| self.matches(t))
            .cloned()
            .collect();
        if out.is_empty() {
            return Err(SelectorError::Nothing(self.to_string()));
        }
        Ok(out)
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = |i: &Item| match i {
            Item::All => "all".to_owned(),
            Item::Role(r) => format!("@{r}"),
            Item::Glob(g) | Item::Host(g) => g.clone(),
        };
        let mut parts: Vec<String> = self.include.iter().map(word).collect();
        parts.extend(self.exclude.iter().map(|i| format!("!{}", word(i))));
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<Target> {
        vec![
            "10.0.0.1"
                .parse::<Target>()
                .unwrap()
                .with_role(Role::Master),
            "10.0.0.2"
                .parse::<Target>()
                .unwrap()
                .with_role(Role::Master),
            "10.0.1.1:2222"
                .parse::<Target>()
                .unwrap()
                .with_role(Role::Agent),
            "[fd00::5]:22"
                .parse::<Target>()
                .unwrap()
                .with_role(Role::AgentPublic),
        ]
    }

    fn names(sel: &str) -> Result<Vec<String>, SelectorError> {
        Selector::parse(sel)?
            .select(&hosts())
            .map(|v| v.iter().map(|t| t.addr.to_string()).collect())
    }

    #[test]
    fn selects() {
        assert_eq!(names("@master").unwrap(), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(
            names("@agent_public,10.0.0.2").unwrap(),
            ["10.0.0.2", "[fd00::5]:22"]
        );
        assert_eq!(names("@public_agent").unwrap(), ["[fd00::5]:22"]);
        assert_eq!(
            names("10.0.*").unwrap(),
            ["10.0.0.1", "10.0.0.2", "10.0.1.1:2222"]
        );
        assert_eq!(names("10.0.*,!@agent").unwrap(), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(
            names("!10.0.0.1").unwrap(),
            ["10.0.0.2", "10.0.1.1:2222", "[fd00::5]:22"]
        );
        assert_eq!(names("10.0.1.1").unwrap(), ["10.0.1.1:2222"]);
        assert_eq!(names("10.0.1.1:2222").unwrap(), ["10.0.1.1:2222"]);
        assert_eq!(names("fd00::5").unwrap(), ["[fd00::5]:22"]);
        assert_eq!(names("all").unwrap().len(), 4);
        assert_eq!(names("*:2222").unwrap(), ["10.0.1.1:2222"]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            tarmac_types::error_report::text_with_hint(&names("10.0.0.9").unwrap_err()),
            "no host matches `10.0.0.9` (hosts: 10.0.0.1, 10.0.0.2, 10.0.1.1:2222, [fd00::5]:22)\n\
             hint: check the spelling, or use a glob such as 10.0.0.*"
        );
        assert_eq!(
            names("@boss").unwrap_err().to_string(),
            "unknown role `boss` in host selector: expected @master, @agent or @agent_public"
        );
        assert_eq!(
            names("a,,b").unwrap_err(),
            SelectorError::Empty("a,,b".into())
        );
        assert_eq!(
            names("192.*").unwrap_err().to_string(),
            "the selector `192.*` matches no host"
        );
        assert_eq!(
            Selector::parse("@master,!10.0.0.1").unwrap().to_string(),
            "@master,!10.0.0.1"
        );
    }
}
