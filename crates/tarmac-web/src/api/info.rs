//! `/info` and `/schema`: what this installer is and the configuration keys it knows.

use super::*;

#[derive(Serialize, ToSchema)]
pub struct Info {
    pub version: String,
    pub genconf_dir: String,
    pub distribution: Option<String>,
    pub build_dir: String,
    pub signed: bool,
    pub tls: bool,
}

/// Server facts: version, directories.
#[utoipa::path(get, path = "/api/v1/info", responses((status = 200, body = Info), (status = 401, body = ErrorBody)))]
pub(super) async fn info(State(app): State<AppState>) -> Json<Info> {
    Json(Info {
        version: env!("CARGO_PKG_VERSION").into(),
        genconf_dir: app.opts.genconf_dir.display().to_string(),
        distribution: app.opts.dist.dir().map(|d| d.display().to_string()),
        build_dir: app.opts.build_dir.display().to_string(),
        signed: app.opts.public_key.is_some(),
        tls: app.opts.tls,
    })
}

/// One settable parameter of the installer or the distribution.
#[derive(Serialize, ToSchema)]
pub struct ParamView {
    pub name: String,
    /// string, int, port, bool, enum, ip, host, url, path, duration, bytes, ip_list, host_list, list, dict.
    #[serde(rename = "type")]
    pub ty: String,
    pub description: String,
    #[schema(value_type = Option<Object>)]
    pub default: Option<Json_>,
    /// The default is calculated from other values.
    pub default_expr: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub example: Option<Json_>,
    /// Must be set (no default).
    pub required: bool,
    /// Needed only when this condition holds.
    pub required_when: Option<String>,
    pub optional: bool,
    /// Write-only: the API never returns its value.
    pub secret: bool,
    /// installer or distribution.
    pub origin: String,
    /// enum: the allowed values.
    pub values: Option<Vec<String>>,
    pub multiline: bool,
}

/// Every parameter config.yaml may set, with types, defaults and descriptions.
#[utoipa::path(get, path = "/api/v1/schema", responses((status = 200, body = [ParamView])))]
pub(super) async fn schema(State(app): State<AppState>) -> Json<Vec<ParamView>> {
    use tarmac_config::types::Type;
    let dist = &app.opts.dist;
    let required = dist.required_params();
    let params = dist
        .schema()
        .params
        .values()
        .map(|p| ParamView {
            name: p.name.clone(),
            ty: p.ty.name(),
            description: p.description.clone(),
            default: p.default.clone(),
            default_expr: p.default_expr.clone(),
            example: p.example.clone(),
            required: required.contains(&p.name) && p.required_when.is_none(),
            required_when: p.required_when.clone(),
            optional: p.optional,
            secret: p.secret,
            origin: match p.origin {
                tarmac_config::Origin::Installer => "installer".into(),
                tarmac_config::Origin::Distribution => "distribution".into(),
            },
            values: match &p.ty {
                Type::Enum(v) => Some(v.clone()),
                _ => None,
            },
            multiline: matches!(
                p.ty,
                Type::String {
                    multiline: true,
                    ..
                }
            ),
        })
        .collect();
    Json(params)
}
