//! The stack's S3-compatible store (SeaweedFS, `e2e/stack/s3.sh`): requests need the admin's
//! keys and a wrong secret is refused; a pre-signed URL, signed with `object_store` as the
//! platform signs them, reads its object over plain HTTP without credentials, from this machine
//! and from a pod on the real node (signed for the node address); a tampered or expired URL is
//! refused; and the identities file the stack writes takes a tenant's identity, limited to its
//! `incoming/` prefix, on a reload without a restart.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::PostParams};
use mysimbdp_e2e::{Stack, real_node_placement, unique, wait_for};
use object_store::{
    ObjectStoreExt, PutPayload,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path,
    signer::{Method, Signer, Url},
};

/// A client of the stack's bucket at `endpoint`, signing with the given keys.
fn s3_client(stack: &Stack, endpoint: &str, access_key_id: &str, secret: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region(stack.var("MYSIMBDP_S3_REGION"))
        .with_bucket_name(stack.var("MYSIMBDP_S3_BUCKET"))
        .with_access_key_id(access_key_id)
        .with_secret_access_key(secret)
        .build()
        .expect("an S3 client of the stack's bucket")
}

/// The platform's admin on this machine's endpoint.
fn admin(stack: &Stack) -> AmazonS3 {
    s3_client(
        stack,
        stack.var("MYSIMBDP_S3_ENDPOINT"),
        stack.var("MYSIMBDP_S3_ACCESS_KEY_ID"),
        stack.var("MYSIMBDP_S3_SECRET_ACCESS_KEY"),
    )
}

/// The admin's keys signing for the endpoint pods use (the node address); signing needs no
/// request, so nothing is sent from here.
fn pod_signer(stack: &Stack) -> AmazonS3 {
    s3_client(
        stack,
        stack.var("MYSIMBDP_POD_S3_ENDPOINT"),
        stack.var("MYSIMBDP_S3_ACCESS_KEY_ID"),
        stack.var("MYSIMBDP_S3_SECRET_ACCESS_KEY"),
    )
}

/// A plain HTTP/1.1 request without any credentials, as a pod or a browser sends it: the URL's
/// path and query exactly as signed. Returns the status and the body.
fn http(method: &str, url: &Url) -> (u16, String) {
    let host = url.host_str().expect("a host");
    let port = url.port_or_known_default().expect("a port");
    let mut stream = TcpStream::connect((host, port)).unwrap_or_else(|e| panic!("connect to {host}:{port}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    write!(stream, "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The same URL with one character of its signature changed.
fn tampered_signature(url: &Url) -> Url {
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let signature = pairs.iter_mut().find(|(k, _)| k == "X-Amz-Signature").expect("a signed URL");
    let flipped = if signature.1.starts_with('0') { '1' } else { '0' };
    signature.1.replace_range(0..1, &flipped.to_string());
    let mut tampered = url.clone();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    tampered
}

/// The same signed query on another object's path.
fn tampered_path(url: &Url, other_key: &str) -> Url {
    let mut tampered = url.clone();
    tampered.set_path(&format!("/{}", other_key));
    tampered
}

/// Objects a test wrote, deleted when it ends (also when it fails).
struct Objects {
    stack: Stack,
    store: AmazonS3,
    paths: Vec<Path>,
}

impl Objects {
    fn new(stack: &Stack) -> Self {
        Self { stack: stack.clone(), store: admin(stack), paths: Vec::new() }
    }

    async fn put(&mut self, key: &str, content: &str) -> Path {
        let path = Path::from(key);
        self.store
            .put(&path, PutPayload::from(content.as_bytes().to_vec()))
            .await
            .unwrap_or_else(|e| panic!("the admin puts {key}: {e}"));
        self.paths.push(path.clone());
        path
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        let (stack, paths) = (self.stack.clone(), std::mem::take(&mut self.paths));
        // A runtime and a client of their own: drop may run while the test's runtime unwinds,
        // and a client's pooled connections belong to the runtime that opened them.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            let store = admin(&stack);
            runtime.block_on(async {
                for path in paths {
                    let _ = store.delete(&path).await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn the_admin_puts_and_reads_objects_and_a_wrong_secret_or_no_signature_is_refused() {
    let stack = Stack::load();
    assert_eq!(stack.var("MYSIMBDP_S3_STAGING_URL"), format!("s3://{}", stack.var("MYSIMBDP_S3_BUCKET")));
    let mut objects = Objects::new(&stack);
    let key = format!("{}/incoming/hello.txt", unique("it-s3"));
    let content = format!("hello from {key}\n");
    let path = objects.put(&key, &content).await;
    let read = objects.store.get(&path).await.expect("the admin reads the object back").bytes().await.expect("body");
    assert_eq!(read.as_ref(), content.as_bytes());

    // The right access key with a wrong secret: refused with 403, nothing written.
    let mut secret = stack.var("MYSIMBDP_S3_SECRET_ACCESS_KEY").to_owned();
    secret.replace_range(0..1, if secret.starts_with('0') { "1" } else { "0" });
    let wrong = s3_client(&stack, stack.var("MYSIMBDP_S3_ENDPOINT"), stack.var("MYSIMBDP_S3_ACCESS_KEY_ID"), &secret);
    let other = Path::from(format!("{key}.wrong-secret"));
    match wrong.put(&other, PutPayload::from_static(b"must not be stored")).await {
        Err(object_store::Error::PermissionDenied { source, .. }) => {
            let message = source.to_string();
            assert!(message.contains("403"), "a wrong secret is refused with 403: {message}");
        }
        other => panic!("a put signed with a wrong secret must be refused with 403, got {other:?}"),
    }
    match wrong.get(&path).await {
        Err(object_store::Error::PermissionDenied { .. }) => {}
        other => panic!("a get signed with a wrong secret must be refused with 403, got {:?}", other.map(|_| ())),
    }
    match objects.store.head(&other).await {
        Err(object_store::Error::NotFound { .. }) => {}
        other => panic!("the refused put stored nothing, got {other:?}"),
    }
    // A URL signed with the wrong secret, and a request with no signature at all.
    let url = wrong.signed_url(Method::GET, &path, Duration::from_secs(300)).await.expect("signing is local");
    let (status, body) = http("GET", &url);
    assert_eq!(status, 403, "a URL signed with a wrong secret is refused: {body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");
    let mut unsigned = url.clone();
    unsigned.set_query(None);
    let (status, body) = http("GET", &unsigned);
    assert_eq!(status, 403, "an anonymous request is refused: {body}");
    let (status, body) = http("GET", &Url::parse(stack.var("MYSIMBDP_S3_ENDPOINT")).expect("an endpoint URL"));
    assert_eq!(status, 403, "anonymous listing of the buckets is refused: {body}");
}

#[tokio::test]
async fn a_presigned_url_reads_its_object_without_credentials_here_and_in_a_pod_on_the_real_node() {
    let stack = Stack::load();
    let mut objects = Objects::new(&stack);
    let prefix = unique("it-s3");
    let key = format!("{prefix}/incoming/run-1.csv");
    let content = format!("id,origin\n1,{prefix}\n");
    let path = objects.put(&key, &content).await;
    let other_key = format!("{prefix}/incoming/other.csv");
    objects.put(&other_key, "not for this run\n").await;

    // From this machine: plain HTTP, no credentials, the URL alone.
    let url = admin(&stack).signed_url(Method::GET, &path, Duration::from_secs(600)).await.expect("signed");
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    let (status, body) = http("GET", &url);
    assert_eq!(status, 200, "GET {url}: {body}");
    assert_eq!(body, content);
    // The URL lets its holder read that object only: not write it, not list the bucket.
    let (status, body) = http("PUT", &url);
    assert_eq!(status, 403, "a GET URL does not allow a PUT: {body}");

    // From a pod on the real node: the URL is signed for the node address, where the stack
    // forwards the S3 port (and only it) to the gateway on loopback.
    let signer = pod_signer(&stack);
    let pod_url = signer.signed_url(Method::GET, &path, Duration::from_secs(600)).await.expect("signed");
    assert_eq!(pod_url.host_str(), Some(stack.var("MYSIMBDP_NODE_IP")), "signed for the pods' endpoint");
    let (status, body) = http("GET", &pod_url);
    assert_eq!(status, 200, "the node address serves the same URL here too: {body}");
    assert_eq!(body, content);
    let tampered = tampered_path(&pod_url, &format!("{}/{other_key}", stack.var("MYSIMBDP_S3_BUCKET")));

    let namespace = unique("it-s3");
    stack.kubectl_ok(&["create", "namespace", &namespace]);
    let _cleanup = Namespace { stack: stack.clone(), name: namespace.clone() };
    stack.kubectl_ok(&[
        "label",
        "namespace",
        &namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    let script = r#"
        wget -q -O- "$RUN_FILE_URL" || { echo "get: failed"; exit 1; }
        echo "=== tampered"
        if wget -O- "$TAMPERED_URL" 2>&1; then echo "tampered: served"; else echo "tampered: refused"; fi
    "#;
    let mut spec = serde_json::json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
        "automountServiceAccountToken": false,
        "securityContext": { "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532 },
        "containers": [{
            "name": "reader",
            "image": stack.var("MYSIMBDP_TOOLBOX_IMAGE"),
            "imagePullPolicy": "Never",
            "command": ["sh", "-c", script],
            "env": [
                { "name": "RUN_FILE_URL", "value": pod_url.as_str() },
                { "name": "TAMPERED_URL", "value": tampered.as_str() }
            ],
            "resources": { "requests": { "cpu": "10m", "memory": "16Mi" }, "limits": { "memory": "16Mi" } },
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": { "drop": ["ALL"] },
                "runAsNonRoot": true,
                "seccompProfile": { "type": "RuntimeDefault" }
            }
        }]
    });
    let placement = real_node_placement(&stack);
    spec["nodeSelector"] = placement["nodeSelector"].clone();
    spec["tolerations"] = placement["tolerations"].clone();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "presigned-reader" }, "spec": spec
    }))
    .expect("a valid pod");
    let pods: Api<Pod> = Api::namespaced(stack.kube_client().await, &namespace);
    wait_for("the namespace's default service account", Duration::from_secs(30), || {
        let stack = stack.clone();
        let namespace = namespace.clone();
        async move {
            let output = stack.kubectl().args(["get", "serviceaccount", "default", "-n", &namespace]).output().ok()?;
            output.status.success().then_some(())
        }
    })
    .await;
    pods.create(&PostParams::default(), &pod).await.expect("the restricted profile admits the pod");
    let deadline = Instant::now() + Duration::from_secs(120);
    let phase = loop {
        let phase =
            pods.get("presigned-reader").await.ok().and_then(|p| p.status).and_then(|s| s.phase).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            break phase;
        }
        if Instant::now() >= deadline {
            let describe = stack.kubectl().args(["describe", "pod", "-n", &namespace, "presigned-reader"]).output();
            let describe = describe.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            panic!("the pod did not finish within 120s:\n{describe}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let logs = stack.kubectl_ok(&["logs", "-n", &namespace, "presigned-reader"]);
    assert_eq!(phase, "Succeeded", "the pod read its URL: {logs}");
    let (read, tampered_out) = logs.split_once("=== tampered\n").expect("both parts ran");
    assert_eq!(read, content, "the pod read the object through its pre-signed URL");
    assert!(tampered_out.contains("tampered: refused"), "a URL moved to another object is refused: {tampered_out}");
    assert!(tampered_out.contains("403"), "refused with 403: {tampered_out}");
    assert!(!tampered_out.contains("not for this run"), "{tampered_out}");
}

/// A namespace deleted when dropped.
struct Namespace {
    stack: Stack,
    name: String,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.stack.kubectl().args(["delete", "namespace", &self.name, "--wait=false"]).output();
    }
}

#[tokio::test]
async fn a_tampered_or_expired_presigned_url_is_refused() {
    let stack = Stack::load();
    let mut objects = Objects::new(&stack);
    let prefix = unique("it-s3");
    let key = format!("{prefix}/incoming/data.csv");
    let path = objects.put(&key, "a,b\n1,2\n").await;
    let other_key = format!("{prefix}/incoming/secret.csv");
    objects.put(&other_key, "not yours\n").await;
    let store = admin(&stack);
    let url = store.signed_url(Method::GET, &path, Duration::from_secs(600)).await.expect("signed");
    assert_eq!(http("GET", &url).0, 200, "the untouched URL works");

    let (status, body) = http("GET", &tampered_signature(&url));
    assert_eq!(status, 403, "a changed signature is refused: {body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");
    let moved = tampered_path(&url, &format!("{}/{other_key}", stack.var("MYSIMBDP_S3_BUCKET")));
    let (status, body) = http("GET", &moved);
    assert_eq!(status, 403, "the signature of one object does not open another: {body}");
    assert!(!body.contains("not yours"), "{body}");
    let mut longer = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .map(|(k, v)| if k == "X-Amz-Expires" { (k, "604800".to_owned()) } else { (k, v) })
        .collect();
    longer.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, body) = http("GET", &longer);
    assert_eq!(status, 403, "a lifetime stretched after signing is refused: {body}");

    // Expiry: a URL valid for one second (counted from its X-Amz-Date, whole seconds) is
    // refused as expired once that second has passed, while one signed at the same moment for
    // longer still works.
    let short = store.signed_url(Method::GET, &path, Duration::from_secs(1)).await.expect("signed");
    assert!(short.query_pairs().any(|(k, v)| k == "X-Amz-Expires" && v == "1"), "{short}");
    let body = wait_for("the one-second URL to expire", Duration::from_secs(30), || {
        let short = short.clone();
        async move {
            let (status, body) = http("GET", &short);
            (status == 403).then_some(body)
        }
    })
    .await;
    assert!(body.to_ascii_lowercase().contains("expired"), "refused because it expired: {body}");
    assert_eq!(http("GET", &url).0, 200, "the longer-lived URL still works");
}

/// The identities file (`MYSIMBDP_S3_IDENTITIES_FILE`), as s3.sh documents it: an identity
/// added to it is taken on SIGHUP without a restart, is limited to the actions and prefix it
/// names, and is revoked when it leaves the file.
#[tokio::test]
async fn the_identities_file_takes_a_tenant_limited_to_its_prefix_on_a_reload() {
    let stack = Stack::load();
    let file = stack.var("MYSIMBDP_S3_IDENTITIES_FILE").to_owned();
    let tenant = unique("it-s3-tenant");
    let bucket = stack.var("MYSIMBDP_S3_BUCKET").to_owned();
    let (key_id, secret) = (format!("MSBTEST{:013}", std::process::id()), unique("secret").replace('-', ""));
    let identity = serde_json::json!({
        "name": tenant,
        "credentials": [{ "accessKey": key_id, "secretKey": secret }],
        "actions": [
            format!("Write:{bucket}/{tenant}/incoming/*"),
            format!("Read:{bucket}/{tenant}/incoming/*"),
            format!("List:{bucket}/{tenant}/incoming/*"),
        ],
    });
    let _identity = Identity::add(&stack, &file, identity);
    let tenant_store = s3_client(&stack, stack.var("MYSIMBDP_S3_ENDPOINT"), &key_id, &secret);
    let mut objects = Objects::new(&stack);
    let own = Path::from(format!("{tenant}/incoming/a.csv"));
    objects.paths.push(own.clone());
    let started = Instant::now();
    wait_for("the tenant's identity to be loaded", Duration::from_secs(30), || {
        let tenant_store = tenant_store.clone();
        let own = own.clone();
        async move { tenant_store.put(&own, PutPayload::from_static(b"x,y\n")).await.ok() }
    })
    .await;
    eprintln!("a new identity was usable {:?} after SIGHUP", started.elapsed());
    let read = tenant_store.get(&own).await.expect("the tenant reads its own file").bytes().await.expect("body");
    assert_eq!(read.as_ref(), b"x,y\n");

    let elsewhere =
        [format!("{tenant}/accepted/a.csv"), format!("{tenant}x/incoming/a.csv"), "other/incoming/a.csv".into()];
    for key in &elsewhere {
        let path = Path::from(key.as_str());
        objects.paths.push(path.clone());
        match tenant_store.put(&path, PutPayload::from_static(b"no")).await {
            Err(object_store::Error::PermissionDenied { .. }) => {}
            other => panic!("the tenant must not write {key}: {other:?}"),
        }
    }
    let admin_path = objects.put(&format!("{}/incoming/b.csv", unique("it-s3-other")), "other tenant\n").await;
    match tenant_store.get(&admin_path).await {
        Err(object_store::Error::PermissionDenied { .. }) => {}
        other => panic!("the tenant must not read another tenant's file: {:?}", other.map(|_| ())),
    }

    // Removed from the file and reloaded: its keys stop working.
    drop(_identity);
    wait_for("the tenant's identity to be revoked", Duration::from_secs(30), || {
        let tenant_store = tenant_store.clone();
        let own = own.clone();
        async move {
            match tenant_store.get(&own).await {
                Err(object_store::Error::PermissionDenied { .. }) => Some(()),
                _ => None,
            }
        }
    })
    .await;
}

/// An identity in the stack's identities file, removed (and weed told) when dropped.
struct Identity {
    stack: Stack,
    file: String,
    name: String,
}

impl Identity {
    fn add(stack: &Stack, file: &str, identity: serde_json::Value) -> Self {
        let name = identity["name"].as_str().expect("a name").to_owned();
        edit_identities(stack, file, |identities| identities.push(identity));
        Self { stack: stack.clone(), file: file.to_owned(), name }
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        let name = self.name.clone();
        edit_identities(&self.stack, &self.file, |identities| identities.retain(|i| i["name"] != name.as_str()));
    }
}

/// Rewrites the identities file (atomically, mode 600) and has weed reload it (SIGHUP).
fn edit_identities(stack: &Stack, file: &str, edit: impl FnOnce(&mut Vec<serde_json::Value>)) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("the identities file is JSON");
    let mut identities: Vec<serde_json::Value> =
        serde_json::from_value(config["identities"].take()).expect("a list of identities");
    edit(&mut identities);
    config["identities"] = identities.into();
    let tmp = format!("{file}.test-{}", std::process::id());
    std::fs::write(&tmp, serde_json::to_string_pretty(&config).expect("JSON")).expect("write the identities file");
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod 600");
    std::fs::rename(&tmp, file).expect("replace the identities file");
    let pid_file = stack.var("MYSIMBDP_S3_WEED_PID_FILE");
    let pid = std::fs::read_to_string(pid_file).unwrap_or_else(|e| panic!("read {pid_file}: {e}"));
    let pid = pid.split_whitespace().next().expect("a pid").to_owned();
    let status = Command::new("kill").args(["-HUP", &pid]).status().expect("kill runs");
    assert!(status.success(), "signal weed (pid {pid}) to reload its identities");
}
