//! The nodes sharing the store: `GET /nodes` (the page) and
//! `GET /api/nodes` (JSON).

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::auth::{ApiUser, PageUser};
use super::pages::time;
use super::{AppError, AppState, Routes};
use crate::store::Backend;
use crate::store::pg::nodes::NodeRow;

pub(super) fn routes() -> Routes {
    Routes::new().get("/nodes", page).get("/api/nodes", api)
}

/// A node's state in one word, and its colour class.
fn node_state(node: &NodeRow) -> (&'static str, &'static str) {
    if node.live {
        ("live", "up")
    } else if node.left {
        ("left", "paused")
    } else {
        ("lapsed", "down")
    }
}

struct NodeView {
    name: String,
    location: String,
    state: &'static str,
    state_class: &'static str,
    sensors: i64,
    checks_per_s: String,
    late: i64,
    missed: i64,
    heartbeat: String,
    started: String,
    version: String,
}

#[derive(Template)]
#[template(path = "nodes.html")]
struct NodesPage {
    user: Option<String>,
    admin: bool,
    csrf: String,
    postgres: bool,
    live: usize,
    nodes: Vec<NodeView>,
}

/// `GET /nodes`.
async fn page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
) -> Result<Response, AppError> {
    let nodes = state.db.nodes().await?;
    let (user, admin, csrf) = super::pages::page_frame(&user);
    let page = NodesPage {
        user,
        admin,
        csrf,
        postgres: matches!(state.db, Backend::Postgres(_)),
        live: nodes.iter().filter(|n| n.live).count(),
        nodes: nodes
            .into_iter()
            .map(|node| {
                let (word, class) = node_state(&node);
                NodeView {
                    state: word,
                    state_class: class,
                    sensors: node.heartbeat.sensors,
                    checks_per_s: format!("{:.1}", node.heartbeat.checks_per_s),
                    late: node.heartbeat.late,
                    missed: node.heartbeat.missed,
                    heartbeat: time(node.heartbeat_ms),
                    started: time(node.started_ms),
                    name: node.name,
                    location: node.location,
                    version: node.version,
                }
            })
            .collect(),
    };
    super::render(&page, axum::http::StatusCode::OK)
}

/// `GET /api/nodes`: every node, live ones first, with its state.
async fn api(State(state): State<AppState>, _: ApiUser) -> Result<Response, AppError> {
    let nodes: Vec<serde_json::Value> = state
        .db
        .nodes()
        .await?
        .into_iter()
        .map(|node| {
            let mut value = serde_json::to_value(&node).expect("a node serialises");
            value["state"] = node_state(&node).0.into();
            value
        })
        .collect();
    Ok(Json(nodes).into_response())
}
