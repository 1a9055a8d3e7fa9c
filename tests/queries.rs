//! No N+1 queries: the dashboard and the sensor list make the same number
//! of SQL statements for 10 sensors as for 10,000, on SQLite and on
//! PostgreSQL. A test binary of its own, because the statement counter is
//! process-wide.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use portwatch::config::from_toml;
use portwatch::store::accounts::Role;
use portwatch::store::location::Location;
use portwatch::store::{Backend, Db, Storage, statements_run};
use portwatch::web::{AppState, app};
use portwatch_testpg::Cluster;
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

/// Statements run by one request for each of `paths`, on `db` once it
/// holds `sensors` sensors.
async fn statements(db: Backend, sensors: usize, paths: &[&str]) -> Vec<u64> {
    db.apply(from_toml("load.toml", &config(sensors)).unwrap())
        .await
        .unwrap();
    let token = db.create_token("count".into(), Role::Admin).await.unwrap();
    let state = AppState::new(db, None, None);
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
                let page = String::from_utf8_lossy(&body);
                let rows = page.matches("class=\"sensor\"").count();
                // Every sensor was read: up to 300 they are all rows; above,
                // a quiet group is a summary that counts them, and its own
                // pages show them 200 at a time.
                if *path == "/" && sensors <= 300 {
                    assert_eq!(rows, sensors);
                } else if *path == "/" {
                    assert_eq!(rows, 0);
                    assert!(
                        page.contains(&format!("Show its {sensors} sensors")),
                        "{page}"
                    );
                } else if path.starts_with("/?group=") {
                    assert_eq!(rows, sensors.min(200));
                }
            }
        }
    }
    counts
}

/// A new SQLite store in a directory of its own.
fn sqlite(sensors: usize) -> (std::path::PathBuf, Backend) {
    let dir = std::env::temp_dir().join(format!(
        "portwatch-queries-{}-{sensors}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = Db::open(&dir.join("portwatch.db"), 16).unwrap();
    (dir, Backend::from(db))
}

/// A new PostgreSQL database on `cluster`.
async fn postgres(cluster: &Cluster, name: &str) -> Backend {
    cluster.create_database(name).unwrap();
    let location = Location::parse(&cluster.url(name)).unwrap();
    Backend::open(&location, 16).await.unwrap()
}

/// One test for both backends, one after the other: the statement
/// counter is process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_make_the_same_queries_for_10_and_10000_sensors() {
    let paths = [
        "/",
        "/?group=Load",
        "/?q=s0",
        "/api/sensors?limit=10000",
        "/metrics",
    ];
    let check = |small: Vec<u64>, large: Vec<u64>, backend: &str| {
        assert_eq!(
            small, large,
            "{backend}: statements per request for {paths:?}"
        );
        // The dashboard: the session, the tally, the problems, the groups'
        // rows and their glances; a group's page has no problems section;
        // a search reads the sensors it finds once, then their tally and
        // rows, beside the whole store's tally; the API list: the session, the tally, the page, its
        // locations.
        for (path, (&n, bound)) in paths.iter().zip(small.iter().zip([5, 5, 7, 5, 5])) {
            assert!(n <= bound, "{backend}: {path}: {n} statements");
        }
        // Every page reads the store: a count of 0 means the counter is dead.
        assert!(small.iter().all(|&n| n >= 1), "{backend}: {small:?}");
    };
    let (small_dir, small_db) = sqlite(10);
    let (large_dir, large_db) = sqlite(10_000);
    let small = statements(small_db, 10, &paths).await;
    let large = statements(large_db, 10_000, &paths).await;
    check(small, large, "SQLite");
    let _ = std::fs::remove_dir_all(small_dir);
    let _ = std::fs::remove_dir_all(large_dir);

    let Some(cluster) = tokio::task::spawn_blocking(|| {
        Cluster::for_test("queries::pages_make_the_same_queries_for_10_and_10000_sensors")
    })
    .await
    .unwrap() else {
        return;
    };
    let small = statements(postgres(&cluster, "small").await, 10, &paths).await;
    let large = statements(postgres(&cluster, "large").await, 10_000, &paths).await;
    check(small, large, "PostgreSQL");
}
