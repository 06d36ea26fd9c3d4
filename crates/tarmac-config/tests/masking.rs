//! Secret values never reach a terminal, a log or a masked copy: not in the source lines a
//! report prints, not in messages, not through a YAML alias.

mod common;

use common::*;
use tarmac_config::{Distribution, Input, resolve};

const PW: &str = "prometheus_remote_write_password";

fn rendered(config: &str) -> String {
    Genconf::new(config).load().unwrap_err().render()
}

#[test]
fn a_type_error_on_a_secret_line_hides_the_value() {
    let out = rendered(&sample_plus(
        "prometheus_remote_write_url: https://m.example.com/w\nprometheus_remote_write_username: bob\nprometheus_remote_write_password: [hunter2SECRET]",
    ));
    assert_eq!(
        out,
        "\
error: prometheus_remote_write_password: Must be a string, got a list
  --> genconf/config.yaml:12:35
   |
 12 | prometheus_remote_write_password: **HIDDEN**
    |                                   ^

"
        .replace("   |\n 12", "    |\n 12")
    );
}

#[test]
fn a_one_line_config_hides_the_secret_and_keeps_the_caret() {
    let text = format!(
        "{{master_list: [foo], bootstrap_url: 'http://10.0.0.254:8080', {PW}: hunter2SECRET, prometheus_remote_write_username: bob, prometheus_remote_write_url: 'http://r.example'}}\n"
    );
    let out = rendered(&text);
    assert!(!out.contains("hunter2"), "{out}");
    assert_eq!(
        out.lines().take(6).collect::<Vec<_>>().join("\n"),
        "\
error: master_list: Masters must be IP addresses (etcd members are named after the address ip-detect prints): foo
  --> genconf/config.yaml:1:15
   |
 1 | {master_list: [foo], bootstrap_url: 'http://10.0.0.254:8080', prometheus_remote_write_password: **HIDDEN**, prometheus_remote_write_username: bob, prometheus_remote_write_url: 'http://r.example'}
   |               ^
  = hint: list each master by the address genconf/ip-detect prints on it"
    );
    // An error after the hidden value: the caret moves with the shorter text.
    let text = format!(
        "{{master_list: [10.0.0.1], {PW}: hunter2SECRET-LONG-VALUE, bootstrap_url: 'ftp://x'}}\n"
    );
    let out = rendered(&text);
    assert!(!out.contains("hunter2"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[3],
        " 1 | {master_list: [10.0.0.1], prometheus_remote_write_password: **HIDDEN**, bootstrap_url: 'ftp://x'}"
    );
    assert_eq!(lines[4].find('^'), lines[3].find("'ftp"), "{out}");
}

#[test]
fn a_block_scalar_secret_is_hidden_on_every_line() {
    let text = sample_plus(&format!(
        "{PW}: |\n  hunter2SECRET\n  more\nprometheus_remote_write_username: [bob]"
    ));
    let out = rendered(&text);
    assert!(!out.contains("hunter2"), "{out}");
    assert!(
        out.starts_with(
            "\
error: prometheus_remote_write_password: Must be a single line: found a newline (\\n) at character 14
  --> genconf/config.yaml:11:3
    |
 11 |   **HIDDEN**
    |   ^
"
        ),
        "{out}"
    );
}

#[test]
fn text_that_does_not_parse_hides_secret_keys_line_by_line() {
    let out = rendered(&format!(
        "master_list: [10.0.0.1]\n{PW}: \"hunter2SECRET\" x: [\n"
    ));
    assert!(!out.contains("hunter2"), "{out}");
    assert_eq!(
        out.lines().nth(3),
        Some(" 2 | prometheus_remote_write_password: **HIDDEN**"),
        "{out}"
    );
}

#[test]
fn a_secret_reached_through_an_alias_is_masked() {
    let cfg = Genconf::new(&sample_with(
        "dns_search",
        &format!("{PW}: &p hunter2SECRET\nprometheus_remote_write_username: bob\nprometheus_remote_write_url: https://m.example.com/w\ndns_search: [*p]"),
    ))
    .load()
    .unwrap();
    assert!(cfg.secret_names().contains("dns_search"));
    assert!(!cfg.expanded_config_json(true).contains("hunter2"));
    assert!(!cfg.user_config_yaml(true).unwrap().contains("hunter2"));
    assert!(cfg.expanded_config_json(false).contains("hunter2SECRET"));
    // resolv.conf (not a secret file) prints dns_search: rendering refuses to put the
    // aliased secret there.
    assert_eq!(
        tarmac_types::error_report::text_with_hint(&cfg.render().unwrap_err()),
        "template tarmac-config/common/etc/dns/resolv.conf read `dns_search`, which holds a secret value, but the file is not declared secret\n\
         hint: in config.yaml, `dns_search` shares its value with a secret through a YAML anchor and alias (or is calculated from one); write its value out instead"
    );
    // The other way round: the secret copies a value anchored in another key.
    let cfg = Genconf::new(&sample_plus(&format!(
        "prometheus_remote_write_username: &u bob\nprometheus_remote_write_url: https://m.example.com/w\n{PW}: *u"
    )))
    .load()
    .unwrap();
    assert!(
        cfg.secret_names()
            .contains("prometheus_remote_write_username")
    );
    assert!(!cfg.expanded_config_json(true).contains("bob"));
    // A message about a key that copies a secret shows no value either.
    let out = rendered(&sample_with(
        "resolvers",
        &format!(
            "{PW}: &p hunter2SECRET\nprometheus_remote_write_username: bob\nprometheus_remote_write_url: https://m.example.com/w\nresolvers: [*p]"
        ),
    ));
    assert!(!out.contains("hunter2"), "{out}");
    assert!(
        out.starts_with("error: resolvers: Invalid IP addresses in list: item 1\n"),
        "{out}"
    );
}

const SECRET_SCHEMA: &str = "\
format: 1
parameters:
  s_url: {type: url, secret: true, optional: true}
  s_mode: {type: enum, values: [fast, safe], secret: true, optional: true}
  s_port: {type: port, secret: true, optional: true}
  s_host: {type: host, secret: true, optional: true}
  s_list: {type: ip_list, secret: true, default: []}
  s_time: {type: duration, secret: true, optional: true}
files:
  p/common/etc/x.conf: {secret: true}
";

fn secret_errors(line: &str) -> Vec<(String, Option<String>)> {
    let dist = Distribution::from_parts(
        "schema.yaml",
        SECRET_SCHEMA,
        vec![(
            "p/common/etc/x.conf".into(),
            "{{ s_url }}{{ s_mode }}{{ s_port }}{{ s_host }}{{ s_list }}{{ s_time }}".into(),
            0o644,
        )],
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("genconf")).unwrap();
    std::fs::write(tmp.path().join("genconf/ip-detect"), "echo 10.0.0.1\n").unwrap();
    let text = format!("master_list: [10.0.0.1]\nbootstrap_url: http://10.0.0.254:8080\n{line}\n");
    let r = resolve(
        &dist,
        &Input {
            text: &text,
            file_label: "config.yaml".into(),
            base_dir: tmp.path().to_owned(),
        },
    )
    .unwrap_err();
    assert!(!r.render().contains("hunter2"), "{}", r.render());
    r.errors.into_iter().map(|d| (d.message, d.hint)).collect()
}

#[test]
fn messages_for_secret_keys_never_quote_the_value() {
    let cases: [(&str, &str, Option<&str>); 9] = [
        (
            "s_url: hunter2",
            "Invalid URL: relative URL without a base",
            Some("Should be a url (http://example.com/bar or file:///path/to/local/cache)"),
        ),
        (
            "s_url: http://hunter2/",
            "Must not end in a '/'",
            Some("remove the trailing '/'"),
        ),
        (
            "s_url: 'http://:hunter2@'",
            "Invalid URL: empty host",
            Some("Should be a url (http://example.com/bar or file:///path/to/local/cache)"),
        ),
        ("s_mode: hunter2", "Must be one of 'fast', 'safe'.", None),
        (
            "s_port: \"4242hunter2\"",
            "Must be an integer, got a string",
            None,
        ),
        (
            "s_port: \"4242\"",
            "Must be an integer, got a string",
            Some("write the number without quotes"),
        ),
        (
            "s_host: 'hunter2 x'",
            "Invalid host address",
            Some("an IPv4/IPv6 address or a hostname, optionally with :port (IPv6 as [addr]:port)"),
        ),
        (
            "s_list: [10.0.0.1, hunter2]",
            "Invalid IP addresses in list: item 2",
            Some("each entry must be an IPv4 or IPv6 address"),
        ),
        (
            "s_time: hunter2",
            "Invalid duration",
            Some("write a number with a unit, e.g. 90s, 10m, 1h30m"),
        ),
    ];
    for (line, message, hint) in cases {
        assert_eq!(
            secret_errors(line),
            [(message.to_owned(), hint.map(str::to_owned))],
            "{line}"
        );
    }
}

#[test]
fn a_tag_error_on_a_secret_shows_no_value() {
    let out = rendered(&format!(
        "master_list: [10.0.0.1]\n{PW}: !!int hunter2SECRET\n"
    ));
    assert_eq!(
        out,
        "\
error: Unsupported YAML tag !!int on a value that is not a YAML 1.2 int
  --> genconf/config.yaml:2:41
   |
 2 | prometheus_remote_write_password: **HIDDEN**
   |                                   ^
  = hint: remove the tag; only plain values, lists and mappings are used

"
    );
}
