//! The OpenAPI document: served as kept in the repo, and schemathesis (installed by
//! `make setup` into `.venv`) finds no 5xx and no response that breaks it.

use denet_e2e::Relay;
use std::path::PathBuf;
use std::process::Command;

#[tokio::test]
async fn the_served_document_is_the_repo_file() {
    let (status, served) = Relay::shared().get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("openapi/openapi.json")).unwrap()).unwrap();
    assert_eq!(served, file);
    assert_eq!(served["openapi"], "3.1.0");
}

#[test]
fn schemathesis_finds_no_server_error_and_no_nonconforming_response() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin =
        std::env::var("DENET_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|_| root.join(".venv/bin/schemathesis"));
    assert!(bin.exists(), "{} is missing: `make setup` installs it", bin.display());
    let relay = Relay::shared();
    let out = Command::new(&bin)
        .current_dir(&root)
        .env("SCHEMATHESIS_HOOKS", "tests.schemathesis.hooks")
        .env("PYTHONPATH", &root)
        .args(["run", &relay.url("/v1/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        ])
        // One worker: hypothesis trips over a CPython 3.11 AST bug when threaded.
        .args(["--max-examples", "30", "--workers", "1", "--seed", "1"])
        .output()
        .expect("schemathesis runs");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis failed:\n{report}");
    assert!(report.contains("passed"), "{report}");
    assert!(!report.contains("Runtime Error"), "{report}");
}
