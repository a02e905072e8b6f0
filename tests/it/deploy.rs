//! Deployment files, checked against the code since Docker and Kubernetes cannot run here:
//! services, images, ports, env names and probe paths agree with what the binary does, and the
//! config each one mounts passes the same validation as `webhook-relay check`.

use clap::CommandFactory;
use std::path::{Path, PathBuf};
use webhook_relay::config::{self, Env};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(node: &Yaml) -> Vec<String> {
    node.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A CA file so configs that name one in a mounted volume load here.
fn any_ca_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let cert = webhook_relay::devtools::devcert::DevCert::generate().unwrap();
    std::fs::write(file.path(), cert.ca_pem()).unwrap();
    file
}

/// Loads and lints a config folder as `check` does: no error allowed.
fn assert_checks(dir: &Path, env: &[(&str, &str)]) {
    let config = config::load(dir, &Env::from_pairs(env.iter().copied()))
        .unwrap_or_else(|e| panic!("{}:\n{e}", dir.display()));
    let errors: Vec<String> = webhook_relay::config::lint::lint(&config)
        .into_iter()
        .filter(|f| f.severity == webhook_relay::config::Severity::Error)
        .map(|f| f.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

fn subcommands() -> Vec<String> {
    webhook_relay::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

#[test]
fn compose_file_agrees_with_the_code() {
    let docs = yaml(&root().join("docker-compose.yml"));
    let services = &docs[0]["services"];
    let rabbitmq = &services["rabbitmq"];
    assert!(
        rabbitmq["image"].as_str().unwrap().contains("management"),
        "RabbitMQ with the management UI"
    );
    let ports = strings(&rabbitmq["ports"]);
    assert!(ports.iter().any(|p| p.ends_with(":5672:5672")), "{ports:?}");
    assert!(
        ports.iter().any(|p| p.ends_with(":15672:15672")),
        "{ports:?}"
    );

    let worker = &services["worker"];
    assert_eq!(worker["deploy"]["replicas"].as_i64(), Some(2));
    assert_eq!(worker["build"].as_str(), Some("."));
    let command = strings(&worker["command"]);
    assert!(subcommands().contains(&command[0]), "{command:?}");
    let env = &worker["environment"];
    for name in ["RELAY__AMQP__URL", "LOGZIO_TOKEN", "WEBHOOK_RELAY_CONFIG"] {
        assert!(!env[name].is_badvalue(), "worker env {name}");
    }
    assert!(
        env["RELAY__AMQP__URL"]
            .as_str()
            .unwrap()
            .contains("@rabbitmq:5672"),
        "the worker reaches the rabbitmq service"
    );
    let config_dir = env["WEBHOOK_RELAY_CONFIG"].as_str().unwrap();
    let volumes = strings(&worker["volumes"]);
    let mount = volumes
        .iter()
        .find(|v| v.contains(&format!(":{config_dir}")))
        .expect("config folder mounted at WEBHOOK_RELAY_CONFIG");
    let host_dir = root().join(mount.split(':').next().unwrap().trim_start_matches("./"));

    let fake = &services["fake-logzio"];
    let fake_command = strings(&fake["command"]);
    assert!(subcommands().contains(&fake_command[0]), "{fake_command:?}");
    let token = fake["environment"]["LOGZIO_TOKEN"].as_str().unwrap();
    assert_eq!(
        env["LOGZIO_TOKEN"].as_str(),
        Some(token),
        "same token on both sides"
    );

    // The mounted config passes `check` with the compose environment.
    let ca = any_ca_file();
    let ca_path = ca.path().to_string_lossy().to_string();
    assert_checks(
        &host_dir,
        &[
            ("LOGZIO_TOKEN", token),
            (
                "RELAY__AMQP__URL",
                env["RELAY__AMQP__URL"].as_str().unwrap(),
            ),
            ("RELAY__HTTP__CA_FILE", &ca_path),
        ],
    );
    let config = config::load(
        &host_dir,
        &Env::from_pairs([("LOGZIO_TOKEN", token), ("RELAY__HTTP__CA_FILE", &ca_path)]),
    )
    .unwrap();
    let hook = config.webhook("logzio-audit").unwrap();
    assert_eq!(hook.url.expose().host_str(), Some("fake-logzio"));
    let fake_listen = fake_command
        .iter()
        .skip_while(|a| *a != "--listen")
        .nth(1)
        .unwrap();
    assert_eq!(
        hook.url.expose().port().map(|p| p.to_string()).as_deref(),
        fake_listen.rsplit(':').next(),
        "the webhook calls the port fake-logzio listens on"
    );
    assert!(
        fake_command.contains(&"fake-logzio".to_string()),
        "cert names the service"
    );
}

#[test]
fn dockerfile_agrees_with_the_code() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let healthcheck = text
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(healthcheck.contains("\"healthcheck\""), "{healthcheck}");
    assert!(subcommands().contains(&"healthcheck".to_string()));
    assert!(healthcheck.contains("/healthz"), "{healthcheck}");
    assert!(text.contains("EXPOSE 9090"));
    assert!(text.contains("RELAY__SERVER__LISTEN=0.0.0.0:9090"));
    assert!(text.contains("USER 10001"), "non-root");
    assert!(text.contains("ca-certificates"));
    assert!(text.matches("FROM ").count() >= 2, "multi-stage");
}

#[test]
fn kubernetes_manifests_agree_with_the_code() {
    let dir = root().join("deploy/kubernetes");
    let deployment = &yaml(&dir.join("deployment.yaml"))[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let port = container["ports"][0]["containerPort"].as_i64().unwrap();
    let env: Vec<&Yaml> = container["env"].as_vec().unwrap().iter().collect();
    let env_value = |name: &str| {
        env.iter()
            .find(|e| e["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("env {name}"))
    };
    assert_eq!(
        env_value("RELAY__SERVER__LISTEN")["value"].as_str(),
        Some(format!("0.0.0.0:{port}").as_str())
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert!(!container["resources"]["limits"]["memory"].is_badvalue());
    assert!(!container["resources"]["limits"]["cpu"].is_badvalue());

    // The Secret holds every key the Deployment reads from it.
    let secret = &yaml(&dir.join("secret.yaml"))[0];
    for name in ["LOGZIO_TOKEN", "RELAY__AMQP__URL"] {
        let key = env_value(name)["valueFrom"]["secretKeyRef"]["key"]
            .as_str()
            .unwrap();
        assert!(!secret["stringData"][key].is_badvalue(), "secret key {key}");
    }

    // The ConfigMap is a config folder that passes `check`; it is mounted where
    // WEBHOOK_RELAY_CONFIG points, its webhook file under webhooks/.
    let configmap = &yaml(&dir.join("configmap.yaml"))[0];
    let mount = &container["volumeMounts"][0];
    assert_eq!(
        mount["mountPath"].as_str(),
        env_value("WEBHOOK_RELAY_CONFIG")["value"].as_str()
    );
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir(folder.path().join("webhooks")).unwrap();
    for item in pod["volumes"][0]["configMap"]["items"].as_vec().unwrap() {
        let key = item["key"].as_str().unwrap();
        let path = item["path"].as_str().unwrap();
        let text = configmap["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("key {key}"));
        std::fs::write(folder.path().join(path), text).unwrap();
    }
    assert_checks(
        folder.path(),
        &[
            ("LOGZIO_TOKEN", "x-token-1234"),
            (
                "RELAY__AMQP__URL",
                secret["stringData"]["RELAY__AMQP__URL"].as_str().unwrap(),
            ),
        ],
    );
    let config = config::load(
        folder.path(),
        &Env::from_pairs([("LOGZIO_TOKEN", "x-token-1234")]),
    )
    .unwrap();
    assert_eq!(config.server_listen.map(|a| a.port() as i64), Some(port));
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(
        grace as u64 > config.shutdown.grace.as_secs(),
        "the pod outlives the worker's shutdown grace"
    );

    // The PodDisruptionBudget selects the Deployment's pods.
    let pdb = &yaml(&dir.join("pdb.yaml"))[0];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in pdb["spec"]["selector"]["matchLabels"].as_hash().unwrap() {
        assert_eq!(&labels[key.as_str().unwrap()], value);
    }
    let kustomization = &yaml(&dir.join("kustomization.yaml"))[0];
    for file in strings(&kustomization["resources"]) {
        assert!(dir.join(&file).is_file(), "{file}");
    }
}

/// The console's templates are compiled in: the image's build stage has them.
#[test]
fn dockerfile_copies_the_console_templates() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        text.contains("COPY templates templates"),
        "askama reads templates/ at build"
    );
    assert!(root().join("templates/console/base.html").is_file());
}

#[test]
fn compose_cluster_profile_is_three_nodes_with_one_cookie() {
    let docs = yaml(&root().join("docker-compose.yml"));
    let services = docs[0]["services"].as_hash().expect("services");
    let nodes: Vec<(&str, &Yaml)> = services
        .iter()
        .filter(|(_, service)| strings(&service["profiles"]).contains(&"cluster".to_string()))
        .map(|(name, service)| (name.as_str().unwrap(), service))
        .collect();
    assert_eq!(nodes.len(), 3, "three nodes in the `cluster` profile");
    assert!(
        docs[0]["services"]["rabbitmq"]["profiles"].is_badvalue(),
        "the single broker stays the default"
    );

    let cookies: std::collections::HashSet<&str> = nodes
        .iter()
        .map(|(name, node)| {
            node["environment"]["RABBITMQ_ERLANG_COOKIE"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: RABBITMQ_ERLANG_COOKIE"))
        })
        .collect();
    assert_eq!(cookies.len(), 1, "one cookie for every node: {cookies:?}");

    // AMQP on 127.0.0.1:5701-5703, the ports scripts/cluster uses, one per node.
    let script = std::fs::read_to_string(root().join("scripts/cluster")).unwrap();
    assert!(script.contains(r#"node_port() { echo "570$1"; }"#));
    let mut amqp: Vec<String> = nodes
        .iter()
        .flat_map(|(_, node)| strings(&node["ports"]))
        .filter(|p| p.ends_with(":5672"))
        .collect();
    amqp.sort();
    assert_eq!(
        amqp,
        ["5701", "5702", "5703"].map(|p| format!("127.0.0.1:{p}:5672"))
    );

    // Each node is in the peer-discovery list of the config file every node mounts.
    for (name, node) in &nodes {
        let hostname = node["hostname"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}"));
        let volumes = strings(&node["volumes"]);
        let conf = volumes
            .iter()
            .find(|v| v.contains("/etc/rabbitmq/conf.d/"))
            .unwrap_or_else(|| panic!("{name} mounts the cluster config"));
        let host_file = root().join(conf.split(':').next().unwrap().trim_start_matches("./"));
        let text = std::fs::read_to_string(&host_file)
            .unwrap_or_else(|e| panic!("{}: {e}", host_file.display()));
        assert!(
            text.contains("peer_discovery_backend = classic_config"),
            "{}",
            host_file.display()
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("cluster_formation.classic_config.nodes.")
                    && l.ends_with(&format!("= rabbit@{hostname}"))),
            "{hostname} is listed in {}",
            host_file.display()
        );
    }
}

/// The config folder the Kubernetes ConfigMap holds, as the Deployment mounts it.
fn kubernetes_config(dir: &Path, pod: &Yaml) -> config::Config {
    let configmap = &yaml(&dir.join("configmap.yaml"))[0];
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir(folder.path().join("webhooks")).unwrap();
    for item in pod["volumes"][0]["configMap"]["items"].as_vec().unwrap() {
        let key = item["key"].as_str().unwrap();
        let text = configmap["data"][key].as_str().unwrap();
        std::fs::write(folder.path().join(item["path"].as_str().unwrap()), text).unwrap();
    }
    config::load(
        folder.path(),
        &Env::from_pairs([("LOGZIO_TOKEN", "x-token-1234")]),
    )
    .unwrap()
}

#[test]
fn kubernetes_autoscaling_agrees_with_the_deployment_and_the_config() {
    let dir = root().join("deploy/kubernetes");
    let deployment = &yaml(&dir.join("deployment.yaml"))[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let config = kubernetes_config(&dir, pod);
    let scaled = &yaml(&dir.join("scaledobject.yaml"))[0];
    assert_eq!(scaled["apiVersion"].as_str(), Some("keda.sh/v1alpha1"));
    assert_eq!(scaled["kind"].as_str(), Some("ScaledObject"));
    assert_eq!(
        scaled["metadata"]["namespace"],
        deployment["metadata"]["namespace"]
    );
    let spec = &scaled["spec"];
    assert_eq!(
        spec["scaleTargetRef"]["name"], deployment["metadata"]["name"],
        "scales the Deployment"
    );
    let min = spec["minReplicaCount"].as_i64().unwrap();
    let max = spec["maxReplicaCount"].as_i64().unwrap();
    assert!(1 <= min && min <= max, "min {min}, max {max}");
    // The PodDisruptionBudget never blocks a drain: there is always one worker more than it
    // keeps.
    let pdb = &yaml(&dir.join("pdb.yaml"))[0];
    let keep = pdb["spec"]["minAvailable"].as_i64().unwrap();
    assert!(
        keep < min,
        "PodDisruptionBudget minAvailable {keep} < minReplicaCount {min}"
    );

    let triggers = spec["triggers"].as_vec().unwrap();
    let trigger = |kind: &str| {
        triggers
            .iter()
            .find(|t| t["type"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("a {kind} trigger"))
    };
    // The queue length of the input queue, read with the worker's own broker URL.
    let rabbitmq = &trigger("rabbitmq")["metadata"];
    assert_eq!(rabbitmq["mode"].as_str(), Some("QueueLength"));
    assert_eq!(
        rabbitmq["queueName"].as_str(),
        Some(config.amqp.queue.as_str())
    );
    assert!(rabbitmq["value"].as_str().unwrap().parse::<u32>().unwrap() > 0);
    let host_env = rabbitmq["hostFromEnv"].as_str().unwrap();
    let container = &pod["containers"][0];
    assert!(
        container["env"]
            .as_vec()
            .unwrap()
            .iter()
            .any(|e| e["name"].as_str() == Some(host_env)),
        "hostFromEnv {host_env} is a variable of the worker's container"
    );
    assert_eq!(host_env, "RELAY__AMQP__URL");

    // The backlog's age: ready messages of the input queue over the workers' consume rate.
    let prometheus = trigger("prometheus");
    assert_eq!(prometheus["metricType"].as_str(), Some("Value"));
    let query = prometheus["metadata"]["query"].as_str().unwrap();
    assert!(
        query.contains(&format!("queue=\"{}\"", config.amqp.queue)),
        "{query}"
    );
    assert!(
        query.contains(webhook_relay::ops::metrics::EVENTS_CONSUMED),
        "{query}"
    );
    let threshold: f64 = prometheus["metadata"]["threshold"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(threshold > 0.0);

    // A worker stopped by a scale-down or a drain gets its whole shutdown grace, and a few
    // seconds to close its connection after it.
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap() as u64;
    assert!(
        grace >= config.shutdown.grace.as_secs() + 5,
        "terminationGracePeriodSeconds {grace} vs [shutdown] grace {:?}",
        config.shutdown.grace
    );

    let kustomization = &yaml(&dir.join("kustomization.yaml"))[0];
    assert!(strings(&kustomization["resources"]).contains(&"scaledobject.yaml".to_string()));
}
