//! Every validation case, with its exact message and location, against the reference
//! distribution.

mod common;

use common::*;

const MIN: &str = "master_list: [10.0.0.1]\nbootstrap_url: http://10.0.0.254:8080\n";

#[test]
fn sample_config_is_valid() {
    let cfg = Genconf::new(SAMPLE).load().unwrap();
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
    assert!(Genconf::new(MIN).load().is_ok());
}

#[test]
fn invalid_yaml() {
    assert_eq!(
        diags("master_list: [10.0.0.1\n"),
        [d(
            "config.yaml",
            "1:14",
            "Unable to load configuration file. Invalid YAML in genconf/config.yaml: unclosed bracket '['"
        )]
    );
    assert_eq!(diags("a: b: c\n")[0].0, "config.yaml");
}

#[test]
fn empty_file() {
    for text in ["", "\n", "# just a comment\n", "---\n", "~\n"] {
        assert_eq!(
            diags(text),
            [d("config.yaml", "-", "genconf/config.yaml is empty")],
            "{text:?}"
        );
    }
}

#[test]
fn missing_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tmp.path().join("genconf");
    let r = tarmac_config::load_genconf(&g, &dist()).unwrap_err();
    assert_eq!(
        r.to_json_map()["config.yaml"],
        format!(
            "No config file found at {}.",
            g.join("config.yaml").display()
        )
    );
}

#[test]
fn not_a_mapping_and_duplicate_keys() {
    assert_eq!(
        diags("- 10.0.0.1\n"),
        [d(
            "config.yaml",
            "1:1",
            "genconf/config.yaml must be a mapping of parameter names to values, got a list"
        )]
    );
    assert_eq!(
        diags(&format!("{MIN}ssh_port: 22\nssh_port: 2222\n")),
        [d(
            "ssh_port",
            "4:1",
            "`ssh_port` is set twice (first at line 3)"
        )]
    );
    assert_eq!(
        diags(&format!("{MIN}second: x\n---\nthird: y\n")),
        [d(
            "config.yaml",
            "4:1",
            "genconf/config.yaml must contain one YAML document, found a second `---`"
        )]
    );
}

#[test]
fn unknown_keys_suggest_the_nearest_parameter() {
    let r = Genconf::new(&format!(
        "{MIN}ssh_usr: admin\nresolver: [10.0.0.53]\nfrobnicate: 1\n"
    ))
    .load()
    .unwrap_err();
    let got: Vec<(String, String, Option<String>)> = r
        .errors
        .iter()
        .map(|d| (d.key.clone(), d.message.clone(), d.hint.clone()))
        .collect();
    let dist_dir = dist_dir();
    assert_eq!(
        got,
        [
            (
                "ssh_usr".into(),
                "Unknown parameter `ssh_usr`".into(),
                Some("did you mean `ssh_user`?".into())
            ),
            (
                "resolver".into(),
                "Unknown parameter `resolver`".into(),
                Some("did you mean `resolvers`?".into())
            ),
            (
                "frobnicate".into(),
                "Unknown parameter `frobnicate`".into(),
                Some(format!(
                    "remove it; the parameters of this distribution are in {}/schema.yaml",
                    dist_dir.display()
                ))
            ),
        ]
    );
    assert_eq!(r.errors[0].loc().unwrap().to_string(), "3:1");
}

#[test]
fn wrong_types() {
    assert_eq!(
        diags(&format!(
            "{MIN}cluster_name: [a, b]\nresolvers: 10.0.0.53\nssh_port: '22'\nnode_exporter_systemd_collector: 1\n"
        )),
        [
            d("cluster_name", "3:15", "Must be a string, got a list"),
            d(
                "resolvers",
                "4:12",
                "Must be a list, got a string (\"10.0.0.53\")"
            ),
            d(
                "ssh_port",
                "5:11",
                "Must be an integer, got a string (\"22\")"
            ),
            d(
                "node_exporter_systemd_collector",
                "6:34",
                "Must be true or false, got an integer (1)"
            ),
        ]
    );
    assert_eq!(
        diags(&format!("{MIN}cluster_name: 42\n")),
        [d(
            "cluster_name",
            "3:15",
            "Must be a string, got an integer (42)"
        )]
    );
}

#[test]
fn null_and_float_are_rejected_per_key() {
    assert_eq!(
        diags(&format!(
            "{MIN}cluster_name:\nssh_parallelism: 2.5\nagent_list: ~\netcd_quota_backend_bytes: 1.5\n"
        )),
        [
            d("cluster_name", "3:13", "Must not be empty (null)"),
            d(
                "ssh_parallelism",
                "4:18",
                "Must be an integer, got a float (2.5)"
            ),
            d("agent_list", "5:13", "Must not be empty (null)"),
            d("etcd_quota_backend_bytes", "6:27", "Fractional bytes: 1.5."),
        ]
    );
}

#[test]
fn invalid_addresses_are_listed_together() {
    assert_eq!(
        diags("master_list: ['foo bar', 10.0.0.1, 1.2.3, '10.0.0.1:0']\nbootstrap_url: http://x\n"),
        [d(
            "master_list",
            "1:15",
            "Invalid host addresses in list: foo bar, 1.2.3, 10.0.0.1:0"
        )]
    );
    assert_eq!(
        diags(&format!("{MIN}resolvers: [foo, 10.0.0.53, bar]\n")),
        [d(
            "resolvers",
            "3:13",
            "Invalid IP addresses in list: foo, bar"
        )]
    );
    // Hostnames are valid hosts, but the reference distribution needs master IPs for etcd.
    assert_eq!(
        diags("master_list: [m1.example.com]\nbootstrap_url: http://x\n"),
        [d(
            "master_list",
            "1:14",
            "Masters must be IP addresses (etcd members are named after the address ip-detect prints): m1.example.com"
        )]
    );
}

#[test]
fn duplicates_inside_a_list() {
    assert_eq!(
        diags("master_list: [10.0.0.1, 10.0.0.2, 10.0.0.1]\nbootstrap_url: http://x\n"),
        [d(
            "master_list",
            "1:35",
            "List cannot contain duplicates: 10.0.0.1 appears 2 times"
        )]
    );
    // The same host with different SSH ports, and IPv6 spelt two ways, are the same host.
    assert_eq!(
        diags(&format!(
            "{MIN}agent_list: ['10.0.1.1', '10.0.1.1:2222', 'fd00::1', '[fd00:0::1]:22']\n"
        )),
        [d(
            "agent_list",
            "3:26",
            "List cannot contain duplicates: 10.0.1.1 appears 2 times, fd00::1 appears 2 times"
        )]
    );
}

#[test]
fn duplicates_across_lists() {
    assert_eq!(
        diags(
            "master_list: [10.0.0.1]\nagent_list: [10.0.1.1, '10.0.0.1:22']\npublic_agent_list: [10.0.1.1]\nbootstrap_url: http://x\n"
        ),
        [
            d(
                "master_list",
                "1:15",
                "master_list and agent_list cannot contain duplicates: 10.0.0.1"
            ),
            d(
                "agent_list",
                "2:14",
                "agent_list and public_agent_list cannot contain duplicates: 10.0.1.1"
            ),
            d(
                "agent_list",
                "2:24",
                "master_list and agent_list cannot contain duplicates: 10.0.0.1"
            ),
            d(
                "public_agent_list",
                "3:21",
                "agent_list and public_agent_list cannot contain duplicates: 10.0.1.1"
            ),
        ]
    );
}

#[test]
fn number_of_masters() {
    for (list, n) in [
        ("[10.0.0.1, 10.0.0.2]", 2),
        ("[10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4]", 4),
    ] {
        assert_eq!(
            diags(&format!("master_list: {list}\nbootstrap_url: http://x\n")),
            [d(
                "master_list",
                "1:14",
                &format!("Must have 1, 3, 5, 7, or 9 masters. Found {n}")
            )]
        );
    }
    assert_eq!(
        diags("master_list: []\nbootstrap_url: http://x\n"),
        [d("master_list", "1:14", "Must not be empty")]
    );
}

#[test]
fn bootstrap_url() {
    let url = |u: &str| diags(&format!("master_list: [10.0.0.1]\nbootstrap_url: {u}\n"));
    let empty = "Should be a url (http://example.com/bar or file:///path/to/local/cache)";
    assert_eq!(url("''"), [d("bootstrap_url", "2:16", empty)]);
    assert_eq!(url(""), [d("bootstrap_url", "2:14", empty)]);
    assert_eq!(
        url("123abc/"),
        [d("bootstrap_url", "2:16", "Must not end in a '/'")]
    );
    assert_eq!(
        url("http://10.0.0.254/"),
        [d("bootstrap_url", "2:16", "Must not end in a '/'")]
    );
    assert_eq!(
        url("ftp://10.0.0.254"),
        [d(
            "bootstrap_url",
            "2:16",
            "Unsupported URL scheme 'ftp': must be one of http, https, file"
        )]
    );
    assert!(url("file:///opt/tarmac_install_tmp").is_empty());
    assert!(url("https://repo.example.com/cluster-1").is_empty());
}

#[test]
fn derived_keys_cannot_be_set() {
    let r = Genconf::new(&format!(
        "{MIN}num_masters: 1\netcd_quorum: 1\nip_detect_contents: echo 1\n"
    ))
    .load()
    .unwrap_err();
    let msg = |k: &str| {
        format!(
            "{k} must be calculated, but was explicitly set in the configuration. Remove it from the configuration."
        )
    };
    let got: Vec<_> = r
        .errors
        .iter()
        .map(|e| {
            (
                e.key.as_str(),
                e.loc().unwrap().to_string(),
                e.message.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("num_masters", "3:1".into(), msg("num_masters")),
            ("etcd_quorum", "4:1".into(), msg("etcd_quorum")),
            (
                "ip_detect_contents",
                "5:1".into(),
                msg("ip_detect_contents")
            ),
        ]
    );
    assert_eq!(
        r.errors[2].hint.as_deref(),
        Some(
            "delete this line; ip_detect_contents is the contents of the ip-detect script, read from ip_detect_filename (put the script in genconf/ip-detect or point ip_detect_filename at it)."
        )
    );
}

#[test]
fn required_keys() {
    let r = Genconf::new("cluster_name: c\n").load().unwrap_err();
    assert_eq!(
        r.to_json_map(),
        [
            (
                "bootstrap_url".to_owned(),
                "Must set bootstrap_url, no way to calculate value.".to_owned()
            ),
            (
                "master_list".to_owned(),
                "Must set master_list, no way to calculate value.".to_owned()
            ),
        ]
        .into()
    );
    assert_eq!(
        r.errors[1].hint.as_deref(),
        Some(
            "add `master_list: [10.0.0.1, 10.0.0.2, 10.0.0.3]` to genconf/config.yaml; master_list: Master hosts (IPv4/IPv6 addresses or hostnames, optionally with :port for SSH)."
        )
    );
}

#[test]
fn required_when_another_key_has_a_value() {
    // The password is needed only when a remote-write user is set.
    assert_eq!(
        diags(&format!(
            "{MIN}prometheus_remote_write_url: https://metrics.example.com/api/v1/write\nprometheus_remote_write_username: bob\n"
        )),
        [d(
            "prometheus_remote_write_password",
            "-",
            "Must set prometheus_remote_write_password, no way to calculate value."
        )]
    );
    assert!(
        diags(&format!(
            "{MIN}prometheus_remote_write_url: https://metrics.example.com/api/v1/write\n"
        ))
        .is_empty()
    );
    let r = Genconf::new(&format!("{MIN}prometheus_remote_write_url: https://m.example.com/w\nprometheus_remote_write_username: bob\n"))
        .load()
        .unwrap_err();
    assert!(
        r.errors[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("(required because `prometheus_remote_write_username is not none`)"),
        "{:?}",
        r.errors[0].hint
    );
}

#[test]
fn missing_ip_detect_script() {
    let g = Genconf::with_ip_detect(MIN, None);
    assert_eq!(
        g.load().unwrap_err().to_json_map(),
        [(
            "ip_detect_contents".to_owned(),
            "ip-detect script `genconf/ip-detect` must exist".to_owned()
        )]
        .into()
    );
    let g = Genconf::new(&format!("{MIN}ip_detect_filename: genconf/ip-detect-aws\n"));
    let r = g.load().unwrap_err();
    assert_eq!(
        r.errors[0].message,
        "ip-detect script `genconf/ip-detect-aws` must exist"
    );
    assert_eq!(r.errors[0].loc().unwrap().to_string(), "3:21");
    let g = Genconf::with_ip_detect(MIN, Some("  \n"));
    assert_eq!(
        g.load().unwrap_err().errors[0].message,
        "ip-detect script `genconf/ip-detect` is empty"
    );
    // An absolute path works too.
    let g = Genconf::with_ip_detect(MIN, None);
    let abs = g.tmp.path().join("detect.sh");
    std::fs::write(&abs, "#!/bin/sh\necho 10.0.0.1\n").unwrap();
    std::fs::write(
        g.dir().join("config.yaml"),
        format!("{MIN}ip_detect_filename: {}\n", abs.display()),
    )
    .unwrap();
    assert_eq!(
        g.load().unwrap().ip_detect_script(),
        "#!/bin/sh\necho 10.0.0.1\n"
    );
}

#[test]
fn ports_out_of_range() {
    assert_eq!(
        diags(&format!(
            "{MIN}ssh_port: 0\netcd_client_port: 65536\nprometheus_port: -1\n"
        )),
        [
            d("ssh_port", "3:11", "Must be between 1 and 65535 inclusive"),
            d(
                "etcd_client_port",
                "4:19",
                "Must be between 1 and 65535 inclusive"
            ),
            d(
                "prometheus_port",
                "5:18",
                "Must be between 1 and 65535 inclusive"
            ),
        ]
    );
    let m = "Ports on the masters must differ: etcd_client_port=2379, etcd_peer_port=2380, prometheus_port=9100, node_exporter_port=9100";
    assert_eq!(
        diags(&format!("{MIN}prometheus_port: 9100\n")),
        [
            d("etcd_client_port", "3:18", m),
            d("etcd_peer_port", "3:18", m),
            d("node_exporter_port", "3:18", m),
            d("prometheus_port", "3:18", m),
        ]
    );
}

#[test]
fn yaml11_booleans_are_flagged_not_reinterpreted() {
    assert_eq!(
        diags(&format!("{MIN}node_exporter_systemd_collector: yes\n")),
        [d(
            "node_exporter_systemd_collector",
            "3:34",
            "Must be true or false, got `yes`: a YAML 1.1 boolean, which Tarmac (YAML 1.2) reads as the string \"yes\""
        )]
    );
    // A string parameter keeps the text, with a warning.
    let cfg = Genconf::new(&format!("{MIN}cluster_name: on\n"))
        .load()
        .unwrap();
    assert_eq!(cfg.cluster_name(), "on");
    assert_eq!(cfg.warnings().len(), 1);
    assert_eq!(
        cfg.warnings()[0].message,
        "`on` is read as the string \"on\" (YAML 1.2), not as a boolean"
    );
    // `off` is a legitimate enum value.
    let cfg = Genconf::new(&format!("{MIN}ssh_host_key_policy: off\n"))
        .load()
        .unwrap();
    assert_eq!(cfg.ssh().host_key_policy, tarmac_config::HostKeyPolicy::Off);
}

#[test]
fn other_types() {
    assert_eq!(
        diags(&format!(
            "{MIN}process_timeout: 10 minutes\nssh_host_key_policy: loose\netcd_quota_backend_bytes: 2 GiB\netcd_heartbeat_interval: 5ms\n"
        )),
        [
            d(
                "process_timeout",
                "3:18",
                "Unit 'minutes' not in ['ms', 's', 'm', 'h', 'd', 'w'] in duration \"10 minutes\""
            ),
            d(
                "ssh_host_key_policy",
                "4:22",
                "Must be one of 'strict', 'accept-new', 'off'. Got 'loose'."
            ),
            d("etcd_heartbeat_interval", "6:26", "Must be at least 10ms"),
        ]
    );
    let cfg = Genconf::new(&format!(
        "{MIN}process_timeout: 90\nssh_parallelism: 7\nssh_jump: admin@bastion:2222\n"
    ))
    .load()
    .unwrap();
    let ssh = cfg.ssh();
    assert_eq!(ssh.process_timeout, std::time::Duration::from_secs(90));
    assert_eq!(ssh.parallelism, 7);
    assert_eq!(ssh.jump.as_deref(), Some("admin@bastion:2222"));
}

#[test]
fn cross_field_rules() {
    assert_eq!(
        diags(&format!("{MIN}etcd_heartbeat_interval: 500ms\n")),
        [d(
            "etcd_election_timeout",
            "3:26",
            "Must be at least 5 times etcd_heartbeat_interval (500ms), got 1s"
        )]
    );
    assert_eq!(
        diags(&format!(
            "{MIN}resolvers: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4]\n"
        )),
        [d(
            "resolvers",
            "3:12",
            "At most 3 resolvers are used by the system resolver; found 4"
        )]
    );
    assert_eq!(
        diags(&format!("{MIN}cluster_name: Prod \"East\"\n")),
        [d(
            "etcd_initial_cluster_token",
            "3:15",
            "Must only contain letters, digits and @%+=:,./_- (it is written unquoted into etcd.env)"
        )]
    );
}

#[test]
fn an_error_does_not_cascade_into_derived_values() {
    // master_list is broken: no errors about num_masters, etcd_quorum, all_hosts or the
    // rules that use them.
    assert_eq!(
        diags("master_list: ['1.2.3']\nbootstrap_url: http://x\n"),
        [d(
            "master_list",
            "1:15",
            "Invalid host addresses in list: 1.2.3"
        )]
    );
    // A broken cluster_name does not produce an error for the token calculated from it.
    assert_eq!(
        diags(&format!("{MIN}cluster_name: [x]\n")),
        [d("cluster_name", "3:15", "Must be a string, got a list")]
    );
    // A missing ip-detect script does not break anything else.
    let g = Genconf::with_ip_detect(MIN, None);
    assert_eq!(g.load().unwrap_err().errors.len(), 1);
}

#[test]
fn all_errors_are_reported_at_once() {
    let r = Genconf::with_ip_detect(
        "mastr_list: [10.0.0.1]\nbootstrap_url: http://x/\nssh_port: 99999\nnum_masters: 1\nresolvers: [foo]\n",
        None,
    )
    .load()
    .unwrap_err();
    insta::assert_json_snapshot!(r.to_json_map(), @r#"
    {
      "bootstrap_url": "Must not end in a '/'",
      "ip_detect_contents": "ip-detect script `genconf/ip-detect` must exist",
      "master_list": "Must set master_list, no way to calculate value.",
      "mastr_list": "Unknown parameter `mastr_list`",
      "num_masters": "num_masters must be calculated, but was explicitly set in the configuration. Remove it from the configuration.",
      "resolvers": "Invalid IP addresses in list: foo",
      "ssh_port": "Must be between 1 and 65535 inclusive"
    }
    "#);
    insta::assert_snapshot!(r.render());
}

#[test]
fn alias_bomb_is_a_per_key_error() {
    // dns_search nests aliases nine levels deep: 9^9 strings if expanded.
    let mut text = String::from(MIN);
    text.push_str("resolvers: &a [x,x,x,x,x,x,x,x,x]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 9].join(",");
        text.push_str(&format!("k{}: &{} [{refs}]\n", w[1], w[1]));
    }
    let started = std::time::Instant::now();
    let r = Genconf::new(&text).load().unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(
        r.render(),
        "\
error: ke: Too many aliases: the alias at line 7 of genconf/config.yaml takes the file past more than 10000 values produced through aliases (the limit for the whole file)
  --> genconf/config.yaml:7:9
   |
 7 | ke: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
   |         ^
  = hint: write the values of `ke` out instead of using anchors (&name) and aliases (*name)

"
    );
}

#[test]
fn an_ordinary_alias_still_works() {
    let cfg = Genconf::new(&format!(
        "{MIN}resolvers: &dns [10.0.0.53]\ndns_search: [lab.example]\nagent_list: *dns\n"
    ))
    .load();
    // The alias copies the list: 10.0.0.53 is then an agent too.
    let cfg = cfg.unwrap();
    assert_eq!(
        cfg.get("agent_list"),
        Some(&serde_json::json!(["10.0.0.53"]))
    );
}

#[test]
fn control_characters_are_refused_per_key() {
    // url::Url::parse drops the newline silently; the value would reach install.sh.
    let r = Genconf::new(
        "master_list: [10.0.0.1]\nbootstrap_url: \"http://10.0.0.254:8080/x\\ntouch PWNED;true\"\n",
    )
    .load()
    .unwrap_err();
    assert_eq!(
        r.render(),
        "\
error: bootstrap_url: Must be a single line: found a newline (\\n) at character 25
  --> genconf/config.yaml:2:16
   |
 2 | bootstrap_url: \"http://10.0.0.254:8080/x\\ntouch PWNED;true\"
   |                ^
  = hint: remove it; the value must be one line of printable text

"
    );
    let cases = [
        (
            "cluster_name: \"a\\tb\"",
            "cluster_name",
            "Must not contain control characters: found a tab (\\t) at character 2",
        ),
        (
            "cluster_name: \"a\\0b\"",
            "cluster_name",
            "Must not contain control characters: found a NUL byte (\\0) at character 2",
        ),
        (
            "cluster_name: \"a\\rb\"",
            "cluster_name",
            "Must be a single line: found a carriage return (\\r) at character 2",
        ),
        (
            "cluster_name: \"ab\\x7f\"",
            "cluster_name",
            "Must not contain control characters: found the control character U+007F at character 3",
        ),
        (
            "cluster_name: \"a\\x85\"",
            "cluster_name",
            "Must not contain control characters: found the control character U+0085 at character 2",
        ),
        (
            "ssh_host_key_policy: \"strict\\n\"",
            "ssh_host_key_policy",
            "Must be a single line: found a newline (\\n) at character 7",
        ),
        (
            "ssh_key_path: \"/root/.ssh/id\\0x\"",
            "ssh_key_path",
            "Must not contain control characters: found a NUL byte (\\0) at character 14",
        ),
        (
            "ssh_jump: \"bastion\\n\"",
            "ssh_jump",
            "Must be a single line: found a newline (\\n) at character 8",
        ),
        (
            "dns_search: [ok.example, \"bad\\nexample\"]",
            "dns_search",
            "Item 2: Must be a single line: found a newline (\\n) at character 4",
        ),
        (
            "resolvers: [\"10.0.0.53\\n\"]",
            "resolvers",
            "Item 1: Must be a single line: found a newline (\\n) at character 10",
        ),
        (
            "etcd_quota_backend_bytes: \"2GiB\\n\"",
            "etcd_quota_backend_bytes",
            "Must be a single line: found a newline (\\n) at character 5",
        ),
    ];
    for (line, key, message) in cases {
        let text = if SAMPLE.contains(&format!("{key}:")) {
            sample_with(key, line)
        } else {
            sample_plus(line)
        };
        let e = errors(&text);
        assert_eq!(e.get(key).map(String::as_str), Some(message), "{line}");
    }
}

#[test]
fn urls_are_stored_normalised() {
    let cfg = |u: &str| {
        Genconf::new(&format!("master_list: [10.0.0.1]\nbootstrap_url: {u}\n"))
            .load()
            .unwrap()
            .bootstrap_url()
            .to_owned()
    };
    assert_eq!(cfg("http://10.0.0.254:8080"), "http://10.0.0.254:8080");
    assert_eq!(cfg("HTTP://Repo.Example.COM:80"), "http://repo.example.com");
    assert_eq!(
        cfg("'http://10.0.0.254:8080/a b'"),
        "http://10.0.0.254:8080/a%20b"
    );
    assert_eq!(
        cfg("file:///opt/tarmac_install_tmp"),
        "file:///opt/tarmac_install_tmp"
    );
}

#[test]
fn bootstrap_serve_external_store() {
    let cfg = |u: &str, serve: &str| {
        format!("master_list: [10.0.0.1]\nbootstrap_url: {u}\nbootstrap_serve: {serve}\n")
    };
    // An external store over plain http: hosts pin every sha256, so it need not be trusted.
    let ok = Genconf::new(&cfg("http://10.0.0.9:9000/bucket/prefix", "false"))
        .load()
        .unwrap();
    assert!(!ok.bootstrap_serve());
    let served = Genconf::new(&cfg("http://10.0.0.254:8080", "true"))
        .load()
        .unwrap();
    assert!(served.bootstrap_serve());
    assert!(Genconf::new(MIN).load().unwrap().bootstrap_serve());

    let https = Genconf::new(&cfg("https://store.example.com/b", "false"))
        .load()
        .unwrap_err();
    assert_eq!(
        https
            .errors
            .iter()
            .map(|e| (
                e.key.as_str(),
                e.loc().unwrap().to_string(),
                e.message.as_str(),
                e.hint.as_deref()
            ))
            .collect::<Vec<_>>(),
        [(
            "bootstrap_serve",
            "3:18".to_owned(),
            "bootstrap_serve is false, but bootstrap_url `https://store.example.com/b` is not an http:// URL: an external store is reached over http:// (hosts pin every file's sha256, which install.sh brings over SSH)",
            Some(
                "give the store's plain-http endpoint as bootstrap_url, or remove bootstrap_serve and let tarmac serve https itself"
            )
        )]
    );
    let file = Genconf::new(&cfg("file:///opt/cache", "false"))
        .load()
        .unwrap_err();
    assert_eq!(file.errors.len(), 1);
    assert_eq!(
        file.errors[0].hint.as_deref(),
        Some("remove bootstrap_serve: a file:// bootstrap_url is never served")
    );
    // Not a bool: the type error, on its line.
    let typo = diags(&cfg("http://10.0.0.9:9000/b", "nope"));
    assert_eq!(typo.len(), 1, "{typo:?}");
    assert_eq!(
        (typo[0].0.as_str(), typo[0].1.as_str()),
        ("bootstrap_serve", "3:18")
    );
}
