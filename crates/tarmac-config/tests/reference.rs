//! The configuration reference: exact text on a tiny schema, `explain`'s errors, and
//! `docs/config-reference.md` kept in step with the schemas.

mod common;

use tarmac_config::{Origin, Schema, UnknownKey, closest_keys, explain, render_reference};
use tarmac_types::error_report::{Hint, text_with_hint};

const TINY_INSTALLER: &str = r#"format: 1
parameters:
  master_list:
    type: host_list
    min_items: 1
    description: Master hosts.
    example: [10.0.0.1]
  ssh_port:
    type: port
    default: 22
    description: SSH port.
derived:
  num_masters:
    expr: master_list | length
    description: the number of masters.
"#;

const TINY_DIST: &str = r#"format: 1
parameters:
  mode:
    type: enum
    values: [fast, "off"]
    default: fast
    description: How it runs.
  password:
    type: string
    secret: true
    max_length: 64
    required_when: mode == "fast"
    description: The `admin` password.
  quota:
    type: bytes
    min: 64MiB
    default: 2GiB
  tick:
    type: duration
    min: 10ms
    max: 10s
    default_expr: '"100ms"'
    description: How often.
  tags:
    type: list
    items: string
    optional: true
    max_items: 3
    description: Tags.
rules:
  - assert: mode != "off" or num_masters == 1
    when: tags is not none
    keys: [mode, num_masters]
    message: "off needs one master"
"#;

fn tiny() -> Schema {
    let mut s = Schema::default();
    s.add_file("installer", TINY_INSTALLER, Origin::Installer)
        .unwrap();
    s.add_file("tiny.yaml", TINY_DIST, Origin::Distribution)
        .unwrap();
    s
}

const TINY_REFERENCE: &str = r#"# Configuration reference

<!-- Generated from the installer's schema (crates/tarmac-config/src/installer_schema.yaml) and the schema of the distribution `tiny` by `tarmac config reference --out docs/config-reference.md`. Do not edit by hand. -->

Every key `genconf/config.yaml` may set, and the values calculated from them. `tarmac config explain KEY` prints one entry; `tarmac validate-config` checks a config against these rules.

Durations take units (`500ms`, `90s`, `15m`, `1h30m`, `2d`, `1w`; a bare number is seconds); byte sizes take `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000; a bare number is bytes).

## Installer

The installer's own keys, known to every distribution.

Parameters: [`master_list`](#master_list), [`ssh_port`](#ssh_port).

Calculated (cannot be set): [`num_masters`](#num_masters).

### `master_list`

Master hosts.

- Type: `host_list`
- Allowed: at least 1 item; no duplicates
- Required: yes
- Default: none
- Example: `[10.0.0.1]`
- Secret: no

### `ssh_port`

SSH port.

- Type: `port`
- Allowed: 1 to 65535
- Required: no
- Default: `22`
- Secret: no

### `num_masters`

the number of masters.

- Value: calculated as `master_list | length`; setting it in config.yaml is an error
- Secret: no
- Rule: `mode != "off" or num_masters == 1` (when `tags is not none`)

## Distribution `tiny`

The keys of the distribution `tiny` (its `config/schema.yaml`).

Parameters: [`mode`](#mode), [`password`](#password), [`quota`](#quota), [`tags`](#tags), [`tick`](#tick).

### `mode`

How it runs.

- Type: `enum`
- Allowed: one of `fast`, `off`
- Required: no
- Default: `fast`
- Secret: no
- Rule: `mode != "off" or num_masters == 1` (when `tags is not none`)

### `password`

The `admin` password.

- Type: `string`
- Allowed: 1 to 64 characters
- Required: when `mode == "fast"`
- Default: none
- Secret: yes (masked as `**HIDDEN**` in the copies shipped to hosts)

### `quota`

- Type: `bytes`
- Allowed: at least 64MiB
- Required: no
- Default: `2GiB`
- Secret: no

### `tags`

Tags.

- Type: `list` of `string`
- Allowed: at most 3 items; no duplicates
- Required: no (may stay unset)
- Default: none
- Secret: no

### `tick`

How often.

- Type: `duration`
- Allowed: 10ms to 10s
- Required: no
- Default: calculated as `"100ms"`
- Secret: no
"#;

#[test]
fn the_reference_of_a_tiny_schema() {
    let got = render_reference(&tiny(), "tiny");
    assert_eq!(got, TINY_REFERENCE, "got:\n{got}");
}

#[test]
fn explain_prints_the_entry_of_the_reference() {
    let s = tiny();
    assert_eq!(
        explain(&s, "ssh_port").unwrap(),
        "### `ssh_port`\n\nSSH port.\n\n- Type: `port`\n- Allowed: 1 to 65535\n- Required: no\n- Default: `22`\n- Secret: no\n"
    );
    for key in [
        "master_list",
        "num_masters",
        "mode",
        "password",
        "quota",
        "tags",
        "tick",
    ] {
        let entry = explain(&s, key).unwrap();
        assert!(
            TINY_REFERENCE.contains(&format!("\n{entry}")),
            "{key}: the entry is not the reference's:\n{entry}"
        );
    }
}

#[test]
fn an_unknown_key_is_named_with_the_closest_known_ones() {
    let s = tiny();
    let err = explain(&s, "ssh-prot").unwrap_err();
    assert_eq!(
        err,
        UnknownKey {
            key: "ssh-prot".into(),
            suggestions: vec!["ssh_port".into()],
        }
    );
    assert_eq!(
        text_with_hint(&err),
        "unknown configuration key `ssh-prot`: neither the installer's schema nor the distribution's declares it\nhint: did you mean `ssh_port`? (`tarmac config reference` lists every key)"
    );
    assert_eq!(closest_keys(&s, "mod", 3), vec!["mode"]);
    assert_eq!(closest_keys(&s, "tag", 3), vec!["tags"]);
    assert_eq!(closest_keys(&s, "ssh_pot", 1), vec!["ssh_port"]);
    let far = explain(&s, "kubernetes_version").unwrap_err();
    assert!(far.suggestions.is_empty());
    assert_eq!(
        Hint::hint(&far).as_deref(),
        Some("`tarmac config reference` lists every key"),
        "{far}"
    );
}

#[test]
fn docs_config_reference_is_up_to_date() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config-reference.md");
    let want = render_reference(common::dist().schema(), "reference");
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()))
            + 1;
        panic!(
            "docs/config-reference.md is stale: run `tarmac config reference --out docs/config-reference.md` (first difference at line {line})"
        );
    }
}
