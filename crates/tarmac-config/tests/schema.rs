//! Distribution schemas and templates: what a distribution author gets told, and the
//! mechanics (required-from-usage, secret modes, default_expr) on small in-memory schemas.

use tarmac_config::{Distribution, Input, resolve};
use tarmac_types::Role;

fn t(name: &str, src: &str) -> (String, String, u32) {
    (name.to_owned(), src.to_owned(), 0o644)
}

fn load(schema: &str, templates: Vec<(String, String, u32)>) -> Result<Distribution, String> {
    Distribution::from_parts("schema.yaml", schema, templates).map_err(|e| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(c) = src {
            s.push_str(&format!(": {c}"));
            src = c.source();
        }
        s
    })
}

fn run(
    dist: &Distribution,
    config: &str,
) -> Result<tarmac_config::ResolvedConfig, tarmac_config::Report> {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("genconf")).unwrap();
    std::fs::write(
        tmp.path().join("genconf/ip-detect"),
        "#!/bin/sh\necho 10.0.0.1\n",
    )
    .unwrap();
    resolve(
        dist,
        &Input {
            text: config,
            file_label: "config.yaml".into(),
            base_dir: tmp.path().to_owned(),
        },
    )
}

const BASE: &str = "master_list: [10.0.0.1]\nbootstrap_url: http://x\n";

#[test]
fn unknown_template_variable_is_a_schema_error() {
    let e = load(
        "format: 1\nparameters:\n  web_port: {type: port, default: 80}\n",
        vec![t("cfg/common/etc/web.conf", "port={{ web_prot }}\n")],
    )
    .unwrap_err();
    assert_eq!(
        e,
        "template cfg/common/etc/web.conf uses `web_prot`, which is not a parameter or derived value of the schema\nhint: did you mean `web_port`?"
    );
}

#[test]
fn template_layout_errors() {
    let e = load("format: 1\n", vec![t("cfg/everyone/etc/x", "")]).unwrap_err();
    assert!(
        e.starts_with("template cfg/everyone/etc/x: unknown scope `everyone`"),
        "{e}"
    );
    let e = load("format: 1\n", vec![t("cfg/common/x", "")]).unwrap_err();
    assert!(e.contains("files must be inside a directory"), "{e}");
    let e = load("format: 1\n", vec![t("cfg/common/etc_master/x", "")]).unwrap_err();
    assert!(e.contains("already has a role suffix"), "{e}");
    let e = load("format: 1\n", vec![t("cfg/common/etc/x", "{% if %}")]).unwrap_err();
    assert!(
        e.starts_with("template cfg/common/etc/x does not parse"),
        "{e}"
    );
}

#[test]
fn schema_errors() {
    let e = load("format: 2\n", vec![]).unwrap_err();
    assert_eq!(
        e,
        "schema.yaml: unsupported schema format 2: this Tarmac reads format 1"
    );
    let e = load(
        "format: 1\nparameters:\n  master_list: {type: string}\n",
        vec![],
    )
    .unwrap_err();
    assert!(e.contains("`master_list`: declared twice"), "{e}");
    let e = load(
        "format: 1\nderived:\n  a: {expr: b + 1}\n  b: {expr: a + 1}\n",
        vec![],
    )
    .unwrap_err();
    assert_eq!(e, "calculation cycle in the schema: a -> b -> a");
    let e = load(
        "format: 1\nparameters:\n  x: {type: int, default: 1, optional: true}\n",
        vec![],
    )
    .unwrap_err();
    assert!(e.contains("at most one of"), "{e}");
    let e = load(
        "format: 1\nparameters:\n  x: {type: int, colour: red}\n",
        vec![],
    )
    .unwrap_err();
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn required_parameters_come_from_usage() {
    let schema = "format: 1\nparameters:\n  used: {type: string}\n  unused: {type: string}\n  guarded: {type: string, required_when: mode == 'b'}\n  mode: {type: enum, values: [a, b], default: a}\n";
    let d = load(
        schema,
        vec![t(
            "cfg/common/etc/x",
            "{{ used }}{% if mode == 'b' %}{{ guarded }}{% endif %}\n",
        )],
    )
    .unwrap();
    assert!(d.required_params().contains("used"));
    assert!(!d.required_params().contains("unused"));
    let r = run(&d, BASE).unwrap_err();
    assert_eq!(
        r.to_json_map(),
        [(
            "used".to_owned(),
            "Must set used, no way to calculate value.".to_owned()
        )]
        .into()
    );
    let r = run(&d, &format!("{BASE}used: u\nmode: b\n")).unwrap_err();
    assert_eq!(r.to_json_map().keys().collect::<Vec<_>>(), ["guarded"]);
    let cfg = run(&d, &format!("{BASE}used: u\nmode: b\nguarded: g\n")).unwrap();
    assert_eq!(
        cfg.render().unwrap().for_role(Role::Agent)["etc/x"].bytes,
        b"ug\n"
    );
    // An unused parameter may still be set (and counts for the config id).
    assert!(run(&d, &format!("{BASE}used: u\nunused: z\n")).is_ok());
}

#[test]
fn secrets_make_files_owner_only_unless_overridden() {
    let schema = "format: 1\nparameters:\n  token: {type: string, secret: true}\nderived:\n  header: {expr: \"'Bearer ' ~ token\"}\n";
    let d = load(
        schema,
        vec![
            t("cfg/common/etc/a", "{{ header }}\n"),
            (
                "cfg/common/bin/b".into(),
                "#!/bin/sh\necho {{ token | shquote }}\n".into(),
                0o755,
            ),
            t("cfg/common/etc/c", "no secret\n"),
        ],
    )
    .unwrap();
    let cfg = run(&d, &format!("{BASE}token: s3cr3t\n")).unwrap();
    let r = cfg.render().unwrap();
    let files = r.for_role(Role::Master);
    assert_eq!(files["etc/a"].mode, 0o600);
    assert_eq!(files["bin/b"].mode, 0o700);
    assert_eq!(files["etc/c"].mode, 0o644);
    assert_eq!(files["bin/b"].bytes, b"#!/bin/sh\necho s3cr3t\n");
    // The derived value is secret too.
    assert!(
        cfg.expanded_config_json(true)
            .contains("\"header\": \"**HIDDEN**\"")
    );
    let d = load(
        &format!("{schema}files:\n  cfg/common/etc/a: {{mode: \"0640\"}}\n"),
        vec![t("cfg/common/etc/a", "{{ header }}\n")],
    )
    .unwrap();
    let cfg = run(&d, &format!("{BASE}token: s3cr3t\n")).unwrap();
    assert_eq!(
        cfg.render().unwrap().for_role(Role::Master)["etc/a"].mode,
        0o640
    );
}

#[test]
fn default_expr_and_printing_none() {
    let schema = "format: 1\nparameters:\n  name: {type: string, default_expr: \"cluster_name ~ '-x'\"}\n  opt: {type: string, optional: true}\n";
    let d = load(
        schema,
        vec![
            t("cfg/common/etc/a", "{{ name }}\n"),
            t("cfg/master/etc/b", "{{ opt }}\n"),
        ],
    )
    .unwrap();
    // Printing an unset optional value is a template bug, reported by render.
    let cfg = run(&d, BASE).unwrap();
    let e = cfg.render().unwrap_err();
    assert_eq!(e.to_string(), "template cfg/master/etc/b failed to render");
    let cfg = run(&d, &format!("{BASE}opt: o\ncluster_name: prod\n")).unwrap();
    let r = cfg.render().unwrap();
    assert_eq!(r.for_role(Role::Master)["etc/a"].bytes, b"prod-x\n");
    assert_eq!(r.for_role(Role::Master)["etc/b"].bytes, b"o\n");
    assert!(!r.for_role(Role::Agent).contains_key("etc/b"));
}
