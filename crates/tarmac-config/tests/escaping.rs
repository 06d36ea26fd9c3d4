//! Values printed into shell scripts, environment files and systemd units are escaped for
//! that file, without the template author asking for it.

use std::process::Command;

use tarmac_config::{Distribution, Input, Rendered, resolve};
use tarmac_types::Role;

/// `$`, backtick, both quotes, `%`, space and a backslash.
const NASTY: &str = "a b$HOME`id`\"q\"'s'%n\\";

const SCHEMA: &str = "\
format: 1
parameters:
  v: {type: string}
  lines: {type: string, multiline: true, optional: true}
files:
  p/common/bin/tool: {format: shell}
";

fn templates() -> Vec<(String, String, u32)> {
    [
        (
            "p/common/bin/run.sh",
            "#!/bin/sh\n# value: {{ v }}\nprintf '%s\\n' {{ v }}\nprintf '%s\\n' \"{{ v }}\"\nprintf '%s\\n' {{ v | shquote }}\n",
        ),
        ("p/common/bin/tool", "printf '%s\\n' x{{ v }}y\n"),
        (
            "p/common/etc/p/p.env",
            "# comment {{ v }}\nA={{ v }}\nB=\"--flag={{ v }} --other\"\n",
        ),
        (
            "p/common/etc/systemd/p.service",
            "[Service]\nDescription={{ v }}\nExecStart=/bin/echo {{ v }}\n",
        ),
        ("p/common/etc/p/p.yml", "v: {{ v | tojson }}\nraw: {{ v }}\n"),
        (
            "p/common/etc/p/lines.env",
            "{% if lines is not none %}L={{ lines }}{% endif %}\n",
        ),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_owned(), s.to_owned(), 0o644))
    .collect()
}

fn render(config: &str) -> Result<Rendered, String> {
    let dist = Distribution::from_parts("schema.yaml", SCHEMA, templates()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("genconf")).unwrap();
    std::fs::write(tmp.path().join("genconf/ip-detect"), "echo 10.0.0.1\n").unwrap();
    let text = format!("master_list: [10.0.0.1]\nbootstrap_url: http://10.0.0.254:8080\n{config}");
    let cfg = resolve(
        &dist,
        &Input {
            text: &text,
            file_label: "config.yaml".into(),
            base_dir: tmp.path().to_owned(),
        },
    )
    .map_err(|r| r.render())?;
    cfg.render().map_err(|e| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(c) = src {
            s.push_str(&format!(": {c}"));
            src = c.source();
        }
        s
    })
}

fn file(r: &Rendered, path: &str) -> String {
    String::from_utf8(r.for_role(Role::Agent)[path].bytes.clone()).unwrap()
}

fn nasty() -> Rendered {
    let yaml = serde_json::to_string(NASTY).unwrap();
    render(&format!("v: {yaml}\n")).unwrap()
}

#[test]
fn shell_scripts_quote_every_value() {
    let r = nasty();
    let script = file(&r, "bin/run.sh");
    assert_eq!(
        script,
        r#"#!/bin/sh
# value: 'a b$HOME`id`"q"'\''s'\''%n\'
printf '%s\n' 'a b$HOME`id`"q"'\''s'\''%n\'
printf '%s\n' "a b\$HOME\`id\`\"q\"'s'%n\\"
printf '%s\n' 'a b$HOME`id`"q"'\''s'\''%n\'
"#
    );
    // sh reads every line back as the value itself.
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{NASTY}\n{NASTY}\n{NASTY}\n")
    );
    // The format from the schema's files: entry.
    assert_eq!(
        file(&r, "bin/tool"),
        "printf '%s\\n' x'a b$HOME`id`\"q\"'\\''s'\\''%n\\'y\n"
    );
}

#[test]
fn env_files_escape_for_environment_file_and_sh() {
    let r = nasty();
    let env = file(&r, "etc/p/p.env");
    assert_eq!(
        env,
        r#"# comment a\ b\$HOME\`id\`\"q\"\'s\'%n\\
A=a\ b\$HOME\`id\`\"q\"\'s\'%n\\
B="--flag=a b\$HOME\`id\`\"q\"'s'%n\\ --other"
"#
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{env}\nprintf '%s\\n' \"$A\" \"$B\""))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{NASTY}\n--flag={NASTY} --other\n")
    );
}

#[test]
fn systemd_units_double_percent() {
    let r = nasty();
    assert_eq!(
        file(&r, "etc/systemd/p.service"),
        "[Service]\nDescription=a b$HOME`id`\"q\"'s'%%n\\\nExecStart=/bin/echo a b$HOME`id`\"q\"'s'%%n\\\n"
    );
}

#[test]
fn yaml_files_are_printed_as_is() {
    let r = nasty();
    assert_eq!(
        file(&r, "etc/p/p.yml"),
        "v: \"a b$HOME`id`\\\"q\\\"\\u0027s\\u0027%n\\\\\"\nraw: a b$HOME`id`\"q\"'s'%n\\\n"
    );
}

#[test]
fn a_newline_cannot_reach_an_env_file() {
    let e = render("v: x\nlines: \"a\\nB=injected\"\n").unwrap_err();
    assert_eq!(
        e,
        "template p/common/etc/p/lines.env failed to render: invalid operation: a value printed into an environment file contains the control character U+000A (in p/common/etc/p/lines.env:1)"
    );
}
