//! The declaration and the pass logic, against an in-memory store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::*;

/// A cluster in a map: applies merge the body in (as server-side apply does for the
/// declared fields) and bump `resourceVersion`, as a real write would.
#[derive(Debug, Default)]
struct FakeStore {
    objects: Mutex<BTreeMap<String, Value>>,
    writes: AtomicUsize,
    down: AtomicBool,
}

impl FakeStore {
    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn edit(&self, name: &str, change: impl FnOnce(&mut Value)) {
        change(self.objects.lock().unwrap().get_mut(name).unwrap());
    }

    fn remove(&self, name: &str) {
        self.objects.lock().unwrap().remove(name);
    }

    fn resource_version(&self, name: &str) -> Value {
        self.objects.lock().unwrap()[name]["metadata"]["resourceVersion"].clone()
    }
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (into, from) => *into = from.clone(),
    }
}

impl Store for FakeStore {
    async fn get(&self, object: &Declared) -> Result<Option<Value>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        Ok(self.objects.lock().unwrap().get(&object.name).cloned())
    }

    async fn apply(&self, object: &Declared) -> Result<(), StoreError> {
        let version = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut objects = self.objects.lock().unwrap();
        let stored = objects.entry(object.name.clone()).or_insert_with(
            || json!({"metadata": {"uid": "1234", "creationTimestamp": "2030-01-01T00:00:00Z"}}),
        );
        merge(stored, &object.body);
        stored["metadata"]["resourceVersion"] = json!(version.to_string());
        Ok(())
    }
}

fn binding() -> Declared {
    builtin_objects()
        .into_iter()
        .find(|o| o.name == KUBELET_API_BINDING)
        .unwrap()
}

#[test]
fn every_object_carries_the_managed_by_label() {
    let objects = builtin_objects();
    assert!(objects.len() >= 2);
    for object in &objects {
        let labels = &object.body["metadata"]["labels"];
        assert_eq!(labels[MANAGED_BY.0], MANAGED_BY.1, "{}", object.describe());
        assert_eq!(object.body["metadata"]["name"], object.name.as_str());
        assert_eq!(object.body["kind"], object.resource.kind.as_str());
    }
}

#[test]
fn the_apiserver_may_use_the_kubelet_api() {
    let binding = binding();
    assert_eq!(
        binding.describe(),
        "ClusterRoleBinding cairn:apiserver-kubelet-client"
    );
    assert_eq!(binding.resource.plural, "clusterrolebindings");
    assert_eq!(binding.body["apiVersion"], "rbac.authorization.k8s.io/v1");
    assert_eq!(
        binding.body["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kubelet-api-admin"})
    );
    assert_eq!(
        binding.body["subjects"],
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kube-apiserver-kubelet-client"}])
    );
    // The user is the CN of the PKI leaf the apiserver presents to kubelets.
    let leaf = crate::pki::LEAVES
        .iter()
        .find(|l| l.name == "apiserver-kubelet-client")
        .unwrap();
    assert_eq!(leaf.common_name, APISERVER_KUBELET_CLIENT);
}

#[test]
fn the_default_namespace_enforces_baseline() {
    let ns = builtin_objects()
        .into_iter()
        .find(|o| o.resource.kind == "Namespace")
        .unwrap();
    assert_eq!(ns.name, "default");
    assert_eq!(ns.namespace, None);
    let labels = &ns.body["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
    assert_eq!(labels["pod-security.kubernetes.io/warn"], "restricted");
    // Nothing but metadata: the agent owns no other field of the namespace.
    let keys: Vec<_> = ns.body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata"]);
}

#[test]
fn the_admission_config_matches_the_namespace_labels() {
    let config: Value = serde_json::from_str(&pod_security_admission_config()).unwrap();
    assert_eq!(config["kind"], "AdmissionConfiguration");
    let plugin = &config["plugins"][0];
    assert_eq!(plugin["name"], "PodSecurity");
    let defaults = &plugin["configuration"]["defaults"];
    for (label, level) in namespace_labels() {
        let mode = label.strip_prefix("pod-security.kubernetes.io/").unwrap();
        assert_eq!(defaults[mode], level.as_str(), "{mode}");
    }
    assert_eq!(
        plugin["configuration"]["exemptions"]["namespaces"],
        json!(["kube-system"])
    );
}

#[test]
fn extra_server_fields_are_not_drift_but_changed_declared_ones_are() {
    let desired = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "subjects": [{"name": "u"}], "unset": null});
    let mut actual = json!({
        "metadata": {"name": "x", "uid": "9", "labels": {"a": "1", "other": "2"}},
        "subjects": [{"name": "u", "kind": "User"}],
    });
    assert!(contains(&actual, &desired));
    assert_eq!(first_difference(&actual, &desired), None);

    actual["metadata"]["labels"]["a"] = json!("0");
    assert_eq!(
        first_difference(&actual, &desired).as_deref(),
        Some("metadata.labels.a")
    );
    actual["metadata"]["labels"]["a"] = json!("1");
    actual["subjects"] = json!([{"name": "u"}, {"name": "intruder"}]);
    assert_eq!(
        first_difference(&actual, &desired).as_deref(),
        Some("subjects")
    );
    actual["subjects"] = json!([{"name": "v"}]);
    assert_eq!(
        first_difference(&actual, &desired).as_deref(),
        Some("subjects.0.name")
    );
    actual.as_object_mut().unwrap().remove("subjects");
    assert!(!contains(&actual, &desired));
}

#[tokio::test]
async fn a_second_pass_over_an_unchanged_cluster_writes_nothing() {
    let store = FakeStore::default();
    let objects = builtin_objects();
    let first = pass(&store, &objects).await;
    assert!(first.failed.is_empty());
    assert_eq!(first.applied.len(), objects.len());
    assert!(first.applied.iter().all(|(_, why)| why == "missing"));
    let versions: Vec<_> = objects
        .iter()
        .map(|o| store.resource_version(&o.name))
        .collect();

    let second = pass(&store, &objects).await;
    assert!(second.applied.is_empty(), "{:?}", second.applied);
    assert_eq!(second.in_place, objects.len());
    assert_eq!(store.writes(), objects.len());
    let after: Vec<_> = objects
        .iter()
        .map(|o| store.resource_version(&o.name))
        .collect();
    assert_eq!(versions, after);
}

#[tokio::test]
async fn deleted_and_changed_objects_are_restored() {
    let store = FakeStore::default();
    let objects = builtin_objects();
    pass(&store, &objects).await;

    store.remove(KUBELET_API_BINDING);
    store.edit("default", |ns| {
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = json!("privileged");
        ns["metadata"]["labels"]["team"] = json!("someone else's label");
    });
    let outcome = pass(&store, &objects).await;
    let applied: BTreeMap<_, _> = outcome.applied.into_iter().collect();
    assert_eq!(
        applied["ClusterRoleBinding cairn:apiserver-kubelet-client"],
        "missing"
    );
    assert_eq!(
        applied["Namespace default"],
        "metadata.labels.pod-security.kubernetes.io/enforce differs"
    );
    let objects_now = store.objects.lock().unwrap().clone();
    let labels = &objects_now["default"]["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
    assert_eq!(labels["team"], "someone else's label");
    assert!(contains(&objects_now[KUBELET_API_BINDING], &binding().body));
}

#[tokio::test(start_paused = true)]
async fn the_condition_follows_the_passes_and_failures_are_retried() {
    let store = std::sync::Arc::new(FakeStore::default());
    store.down.store(true, Ordering::SeqCst);
    let conditions = Conditions::new();
    let task = tokio::spawn(run_with(
        ArcStore(store.clone()),
        conditions.clone(),
        builtin_objects(),
        PERIOD,
    ));
    tokio::time::sleep(Duration::from_millis(1)).await;
    let condition = conditions.get(CONDITION).unwrap();
    assert!(!condition.value);
    assert!(
        condition.reason.contains("connection refused"),
        "{}",
        condition.reason
    );
    assert!(
        condition.reason.contains("cannot read ClusterRoleBinding"),
        "{}",
        condition.reason
    );

    store.down.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + PERIOD * 2;
    let condition = conditions.wait(CONDITION, deadline).await.unwrap();
    assert!(
        condition.reason.starts_with("6 built-in objects"),
        "{}",
        condition.reason
    );
    let writes = store.writes();

    // Restored within one period, and only the missing object is written.
    store.remove(KUBELET_API_BINDING);
    tokio::time::sleep(PERIOD + Duration::from_millis(1)).await;
    assert_eq!(store.writes(), writes + 1);
    assert!(store
        .objects
        .lock()
        .unwrap()
        .contains_key(KUBELET_API_BINDING));
    task.abort();
}

/// The store shared between the running task and the test.
#[derive(Debug)]
struct ArcStore(std::sync::Arc<FakeStore>);

impl Store for ArcStore {
    async fn get(&self, object: &Declared) -> Result<Option<Value>, StoreError> {
        self.0.get(object).await
    }

    async fn apply(&self, object: &Declared) -> Result<(), StoreError> {
        self.0.apply(object).await
    }
}

#[test]
fn join_tokens_may_bootstrap_a_kubelet_and_nodes_renew_their_own() {
    let objects = builtin_objects();
    let binding = |name: &str| {
        objects
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    for (name, group, role) in [
        (
            "cairn:kubelet-bootstrap",
            "system:bootstrappers:cairn:worker",
            "system:node-bootstrapper",
        ),
        (
            "cairn:node-autoapprove-bootstrap",
            "system:bootstrappers:cairn:worker",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        ),
        (
            "cairn:node-autoapprove-certificate-rotation",
            "system:nodes",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        ),
        ("cairn:node-proxier", "system:nodes", "system:node-proxier"),
    ] {
        let body = &binding(name).body;
        assert_eq!(body["kind"], "ClusterRoleBinding", "{name}");
        assert_eq!(body["roleRef"]["name"], role, "{name}");
        assert_eq!(
            body["subjects"],
            json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]),
            "{name}"
        );
    }
}
