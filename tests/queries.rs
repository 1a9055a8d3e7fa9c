//! No N+1 queries: the dashboard and the sensor list make the same number
//! of SQL statements for 10 sensors as for 10,000. A test binary of its own,
//! because the statement counter is process-wide.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use portwatch::config::from_toml;
use portwatch::store::accounts::Role;
use portwatch::store::{Store, statements_run};
use portwatch::web::{AppState, app};
use tower::ServiceExt;

fn config(sensors: usize) -> String {
    let mut text = String::from("[[group]]\nname = \"Load\"\n");
    for server in 0..sensors.div_ceil(100) {
        text +=
            &format!("[[server]]\nname = \"s{server}\"\nhost = \"127.0.0.1\"\ngroup = \"Load\"\n");
        for port in 0..100.min(sensors - server * 100) {
            text += &format!("  [[server.sensor]]\n  port = {}\n", 20_000 + port);
        }
    }
    text
}

/// Statements run by one request for each of `paths`, on a store with
/// `sensors` sensors.
async fn statements(sensors: usize, paths: &[&str]) -> Vec<u64> {
    let dir = std::env::temp_dir().join(format!(
        "portwatch-queries-{}-{sensors}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("portwatch.db");
    let mut store = Store::open(&db).unwrap();
    store
        .apply(&from_toml("load.toml", &config(sensors)).unwrap())
        .unwrap();
    let token = store.create_token("count", Role::Admin).unwrap();
    drop(store);
    let state = AppState::new(portwatch::store::Db::open(&db, 16).unwrap(), None, None);
    let mut counts = Vec::new();
    for path in paths {
        // The first request opens the pooled connection; count the second.
        for round in 0..2 {
            let before = statements_run();
            let request = Request::get(*path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let response = app(state.clone()).oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 26)
                .await
                .unwrap();
            if round == 1 {
                counts.push(statements_run() - before);
                if *path == "/" {
                    assert_eq!(
                        String::from_utf8_lossy(&body)
                            .matches("class=\"sensor\"")
                            .count(),
                        sensors
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    counts
}

#[tokio::test]
async fn pages_make_the_same_queries_for_10_and_10000_sensors() {
    let paths = ["/", "/api/sensors?limit=10000", "/metrics"];
    let small = statements(10, &paths).await;
    let large = statements(10_000, &paths).await;
    assert_eq!(small, large, "statements per request for {paths:?}");
    assert!(small.iter().all(|&n| n <= 3), "{small:?}");
    // Every page reads the store: a count of 0 means the counter is dead.
    assert!(small.iter().all(|&n| n >= 1), "{small:?}");
}
