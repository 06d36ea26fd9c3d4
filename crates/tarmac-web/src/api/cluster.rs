//! `/cluster`: the cluster the configuration describes, with links to its hosts.

use super::*;

#[derive(Serialize, ToSchema)]
pub struct ClusterHost {
    pub host: String,
    pub role: String,
    /// Outcome of the host's last deploy / postflight (ok, unchanged, failed, …).
    pub deploy: Option<String>,
    pub postflight: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Link {
    pub name: String,
    pub url: String,
}

/// What is installed where.
#[derive(Serialize, ToSchema)]
pub struct ClusterView {
    pub cluster_name: String,
    pub hosts: Vec<ClusterHost>,
    pub package_list_id: Option<String>,
    pub packages: Vec<String>,
    pub links: Vec<Link>,
}

/// The installed cluster: hosts by role with their last deploy/postflight outcome, the
/// package list, and links to the cluster's services (prometheus on the first master).
#[utoipa::path(get, path = "/api/v1/cluster", responses((status = 200, body = ClusterView), (status = 400, body = ErrorBody)))]
pub(super) async fn cluster(State(app): State<AppState>) -> ApiResult<Json<ClusterView>> {
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || {
        let cfg = tarmac_genconf::validate(&app2.opts.dist, &app2.opts.genconf_dir)
            .map_err(|r| ApiError::invalid(&r))?;
        let state = app2.state_dir();
        let outcome = |st: Stage| -> BTreeMap<String, String> {
            last_run(&state, st)
                .map(|r| {
                    r.hosts
                        .iter()
                        .map(|(h, rec)| {
                            (
                                h.to_string(),
                                rec.outcome
                                    .as_ref()
                                    .map_or(HostState::Unfinished, HostState::from)
                                    .to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (dep, post) = (outcome(Stage::Deploy), outcome(Stage::Postflight));
        let hosts = cfg
            .all_hosts()
            .into_iter()
            .map(|(h, r)| {
                let k = h.to_string();
                ClusterHost {
                    role: r.as_str().to_owned(),
                    deploy: dep.get(&k).cloned(),
                    postflight: post.get(&k).cloned(),
                    host: k,
                }
            })
            .collect();
        let serve = ServeInfo::read(&app2.opts.genconf_dir).ok();
        let mut links = Vec::new();
        if let (Some(m), Some(port)) = (
            cfg.hosts(Role::Master).first(),
            cfg.get("prometheus_port").and_then(Json_::as_i64),
        ) {
            links.push(Link {
                name: "Prometheus (first master)".into(),
                url: format!("http://{}:{port}/", m.url_host()),
            });
            links.push(Link {
                name: "Prometheus targets".into(),
                url: format!("http://{}:{port}/targets", m.url_host()),
            });
        }
        Ok(Json(ClusterView {
            cluster_name: cfg.cluster_name().to_owned(),
            hosts,
            package_list_id: serve.as_ref().map(|s| s.list_id.clone()),
            packages: serve
                .map(|s| s.packages.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            links,
        }))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}
