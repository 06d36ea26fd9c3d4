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
        if let Some(h) = tarmac_types::error_report::Hint::hint(&e) {
            s.push_str("\nhint: ");
            s.push_str(&h);
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
fn templates_reading_secrets_must_be_secret_files() {
    let schema = "format: 1\nparameters:\n  token: {type: string, secret: true}\n  plain: {type: string, default: p}\nderived:\n  header: {expr: \"'Bearer ' ~ token\"}\n";
    let hint = "hint: add `cfg/common/etc/a: {secret: true, group: <group of the service that reads it>, mode: \"0640\"}` under `files:` in schema.yaml; secret files are not packed into the config package (served over HTTP) but delivered over SSH to the hosts of their scope";
    // Directly, through a derived value, and through a `{% set %}` alias: all refused when
    // the distribution loads, naming the file and the key.
    for (src, key, why) in [
        ("{{ token }}\n", "token", "is secret"),
        ("{{ header }}\n", "header", "is calculated from a secret"),
        (
            "{% set t = token %}{{ plain }} {{ t }}\n",
            "token",
            "is secret",
        ),
        (
            "{% macro m() %}{{ token }}{% endmacro %}{{ m() }}\n",
            "token",
            "is secret",
        ),
    ] {
        assert_eq!(
            load(schema, vec![t("cfg/common/etc/a", src)]).unwrap_err(),
            format!(
                "template cfg/common/etc/a uses `{key}`, which {why}, but the file is not declared secret\n{hint}"
            ),
            "{src}"
        );
    }
    // A calculated default counts as calculated from the secret.
    let d = load(
        "format: 1\nparameters:\n  token: {type: string, secret: true}\n  alias: {type: string, default_expr: token}\n",
        vec![t("cfg/common/etc/a", "{{ alias }}\n")],
    )
    .unwrap_err();
    assert!(
        d.starts_with("template cfg/common/etc/a uses `alias`, which is calculated from a secret,"),
        "{d}"
    );

    // Declared secret: owner-only by default, `files:` may set group and mode.
    let files = "files:\n  cfg/common/etc/a: {secret: true}\n  cfg/common/bin/b: {secret: true}\n  cfg/master/etc/g: {secret: true, group: tarmac_svc, mode: \"0640\"}\n";
    let d = load(
        &format!("{schema}{files}"),
        vec![
            t("cfg/common/etc/a", "{{ header }}\n"),
            (
                "cfg/common/bin/b".into(),
                "#!/bin/sh\necho {{ token | shquote }}\n".into(),
                0o755,
            ),
            t("cfg/common/etc/c", "no secret\n"),
            t("cfg/master/etc/g", "{{ token }}\n"),
        ],
    )
    .unwrap();
    let cfg = run(&d, &format!("{BASE}token: s3cr3t\n")).unwrap();
    let r = cfg.render().unwrap();
    let files = r.for_role(Role::Master);
    assert_eq!((files["etc/a"].mode, files["etc/a"].secret), (0o600, true));
    assert_eq!((files["bin/b"].mode, files["bin/b"].secret), (0o700, true));
    assert_eq!((files["etc/c"].mode, files["etc/c"].secret), (0o644, false));
    assert_eq!(files["etc/g"].mode, 0o640);
    assert_eq!(files["etc/g"].group.as_deref(), Some("tarmac_svc"));
    assert_eq!(files["bin/b"].bytes, b"#!/bin/sh\necho s3cr3t\n");
    let pkg = tarmac_types::PackageName::new("cfg").unwrap();
    assert_eq!(
        r.secret_layout(&pkg).keys().collect::<Vec<_>>(),
        ["bin/b", "etc/a", "etc_master/g"]
    );
    assert!(!r.package_layout(&pkg).contains_key("etc/a"));
    assert!(r.package_layout(&pkg).contains_key("etc/c"));
    // The derived value is secret too.
    assert!(
        cfg.expanded_config_json(true)
            .contains("\"header\": \"**HIDDEN**\"")
    );
}

#[test]
fn a_public_template_cannot_read_a_secret_through_an_include() {
    // The static check sees only the including template's own names; rendering records
    // what each template actually read.
    let schema = "format: 1\nparameters:\n  token: {type: string, secret: true}\nfiles:\n  cfg/common/etc/secret: {secret: true}\n";
    let d = load(
        schema,
        vec![
            t("cfg/common/etc/secret", "{{ token }}\n"),
            t(
                "cfg/common/etc/public",
                "{% include \"cfg/common/etc/secret\" %}",
            ),
        ],
    )
    .unwrap();
    let cfg = run(&d, &format!("{BASE}token: s3cr3t\n")).unwrap();
    assert_eq!(
        tarmac_types::error_report::text_with_hint(&cfg.render().unwrap_err()),
        "template cfg/common/etc/public read `token`, which holds a secret value, but the file is not declared secret\n\
         hint: declare it `cfg/common/etc/public: {secret: true, group: <group of the service that reads it>, mode: \"0640\"}` under `files:` in schema.yaml"
    );
    // `debug()` prints the context: only the names, never a value.
    let d = load(
        schema,
        vec![
            t("cfg/common/etc/secret", "{{ token }}\n"),
            t("cfg/common/etc/public", "{{ debug() }}"),
        ],
    )
    .unwrap();
    let cfg = run(&d, &format!("{BASE}token: s3cr3t\n")).unwrap();
    match cfg.render() {
        Ok(r) => {
            let text =
                String::from_utf8_lossy(&r.for_role(Role::Agent)["etc/public"].bytes).into_owned();
            assert!(!text.contains("s3cr3t"), "{text}");
        }
        Err(e) => assert!(e.to_string().contains("read `token`"), "{e}"),
    }
}

#[test]
fn secret_file_settings_are_checked() {
    let schema = "format: 1\nparameters:\n  token: {type: string, secret: true}\n";
    let tpl = || vec![t("cfg/common/etc/a", "{{ token }}\n")];
    for (entry, message) in [
        (
            "{secret: true, mode: \"0644\"}",
            "schema.yaml: `cfg/common/etc/a`: mode `0644` gives other users access to a secret file: use 0600, or 0640 with `group:` set to the group of the service that reads it",
        ),
        (
            "{secret: true, mode: \"4750\"}",
            "schema.yaml: `cfg/common/etc/a`: mode `4750`: a secret file cannot be setuid, setgid or sticky",
        ),
        (
            "{secret: true, owner: prometheus}",
            "schema.yaml: `cfg/common/etc/a`: owner `prometheus` is not `root` or a package user (tarmac_[a-z0-9_]+, at most 32 characters)",
        ),
        (
            "{secret: true, group: Bad}",
            "schema.yaml: `cfg/common/etc/a`: group `Bad` is not a group name (^[a-z_][a-z0-9_-]*$, at most 32 characters)",
        ),
    ] {
        assert_eq!(
            load(
                &format!("{schema}files:\n  cfg/common/etc/a: {entry}\n"),
                tpl()
            )
            .unwrap_err(),
            message
        );
    }
    assert!(
        load(
            &format!("{schema}files:\n  cfg/common/etc/a: {{secret: true, owner: tarmac_svc, group: tarmac_svc, mode: \"0460\"}}\n"),
            tpl()
        )
        .is_ok()
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
