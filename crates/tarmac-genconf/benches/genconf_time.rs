//! Timing of validate-config and genconf for the reference distribution: the sample config
//! (3 masters, 2 agents) and a config with 10,000 agents. Run by `bench/genconf.sh`
//! (`cargo bench -p tarmac-genconf --bench genconf_time`). Prints one line per measurement:
//! `<name> median_ms=… min_ms=… runs=…`.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tarmac_config::Distribution;
use tarmac_events::{NullSink, Sink};
use tarmac_genconf::{GenconfOptions, genconf, testkit};
use tarmac_pkg::pack::PackOptions;

fn measure(name: &str, runs: usize, mut f: impl FnMut()) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<44} median_ms={:>9.2} min_ms={:>9.2} runs={runs}",
        ms(times[runs / 2]),
        ms(times[0])
    );
}

fn config(agents: usize) -> String {
    let mut s = String::from(
        "cluster_name: bench\nmaster_list: [10.0.0.1, 10.0.0.2, 10.0.0.3]\nbootstrap_url: http://10.0.0.254:8080\npublic_agent_list: [10.0.255.1, 10.0.255.2]\nagent_list:\n",
    );
    for i in 0..agents {
        s.push_str(&format!(
            "  - 10.{}.{}.{}\n",
            1 + i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    s
}

fn main() {
    if let Some(b) = std::env::var_os("TARMAC_BENCH_BUILD_DIR") {
        println!("# build output: {}", Path::new(&b).display());
    } else {
        println!("# build output: a small fake build (4 tiny packages)");
    }
    let dist_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference/config");
    measure("load reference distribution", 20, || {
        Distribution::load(&dist_dir).unwrap();
    });
    let dist = Distribution::load(&dist_dir).unwrap();
    let sink: Sink = Arc::new(NullSink);
    for (label, agents) in [
        ("reference sample (3 masters, 2 agents)", 2),
        ("10,000 agents", 10_000),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path().join("genconf");
        std::fs::create_dir(&g).unwrap();
        std::fs::write(g.join("config.yaml"), config(agents)).unwrap();
        std::fs::write(g.join("ip-detect"), "#!/bin/sh\necho 10.0.0.1\n").unwrap();
        // A real build output when given (its artifacts are hashed and hard-linked), else
        // a small fake one.
        let (build, key) = match std::env::var_os("TARMAC_BENCH_BUILD_DIR") {
            Some(dir) => (std::path::PathBuf::from(dir), None),
            None => {
                let build = tmp.path().join("out");
                std::fs::create_dir(&build).unwrap();
                let key = testkit::fake_build(&build, true);
                (build, key)
            }
        };
        let runs = if agents > 100 { 5 } else { 20 };
        measure(&format!("validate: {label}"), runs, || {
            tarmac_config::load_genconf(&g, &dist).unwrap();
        });
        let cfg = tarmac_config::load_genconf(&g, &dist).unwrap();
        measure(&format!("render: {label}"), runs, || {
            cfg.render().unwrap();
        });
        let opts = GenconfOptions {
            genconf_dir: g.clone(),
            build_dir: build.clone(),
            public_key: key.clone(),
            pack: PackOptions::default(),
        };
        measure(
            &format!("genconf (validate+render+pack+write): {label}"),
            runs,
            || {
                genconf(&dist, &opts, &sink).unwrap();
            },
        );
        let r = genconf(&dist, &opts, &sink).unwrap();
        let prom = cfg.render().unwrap();
        let master = prom.for_role(tarmac_types::Role::Master);
        println!(
            "    config.yaml {} bytes, prometheus.yml {} bytes, install.sh {} bytes, config id {}",
            std::fs::metadata(g.join("config.yaml")).unwrap().len(),
            master["etc/prometheus/prometheus.yml"].bytes.len(),
            std::fs::metadata(r.serve_dir.join("install.sh"))
                .unwrap()
                .len(),
            &r.config_id[..12]
        );
    }
}
