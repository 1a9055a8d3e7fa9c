//! [`Db`]: the one handle to the store that the monitor, the web and the
//! delivery worker share.
//!
//! It is cheap to clone (an `Arc`), holds a bounded pool of connections,
//! and runs each piece of work on a blocking thread with one of them, so
//! async code never waits on SQLite. The store's writes of results and
//! events go through the [`writer`](crate::writer) thread instead; this
//! handle reads, and makes the few writes users ask for (configuration,
//! accounts, the outbox's delivery records).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::{Store, StoreError};

/// The handle. Clone it freely.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Store>>,
    permits: Arc<Semaphore>,
}

impl Db {
    /// The store at `path`, created and migrated if needed, with at most
    /// `connections` connections open at once (at least one).
    pub fn open(path: &Path, connections: usize) -> Result<Db, StoreError> {
        Ok(Db::with(Store::open(path)?, connections))
    }

    /// [`Db::open`] of a store that must exist already
    /// ([`StoreError::Missing`] otherwise).
    pub fn open_existing(path: &Path, connections: usize) -> Result<Db, StoreError> {
        Ok(Db::with(Store::open_existing(path)?, connections))
    }

    fn with(first: Store, connections: usize) -> Db {
        Db {
            inner: Arc::new(Inner {
                path: first.path().to_owned(),
                idle: Mutex::new(vec![first]),
                permits: Arc::new(Semaphore::new(connections.max(1))),
            }),
        }
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` with a connection, on a blocking thread. Waits for a
    /// connection when all are busy; opens one when none is idle.
    pub async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the permits are never closed");
        let inner = self.inner.clone();
        let done = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = inner.idle.lock().expect("pool lock").pop();
            let mut store = match idle {
                Some(store) => store,
                None => Store::open_existing(&inner.path)?,
            };
            let result = work(&mut store);
            inner.idle.lock().expect("pool lock").push(store);
            result
        })
        .await;
        match done {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(StoreError::Closed(self.inner.path.clone())),
        }
    }

    /// Connections open and idle now.
    pub fn idle(&self) -> usize {
        self.inner.idle.lock().expect("pool lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(connections: usize) -> (PathBuf, Db) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portwatch-handle-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(&dir.join("t.db"), connections).unwrap();
        (dir, db)
    }

    /// The handle reuses its connections and never opens more than its
    /// bound, however many callers wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_bound_of_connections_open_and_they_are_reused() {
        let (dir, db) = temp_db(3);
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls: Vec<_> = (0..24)
            .map(|_| {
                let (db, busy, peak) = (db.clone(), busy.clone(), peak.clone());
                tokio::spawn(async move {
                    db.call(move |store| {
                        let now = busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        let generation = store.generation();
                        busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        generation
                    })
                    .await
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 3);
        assert!((1..=3).contains(&db.idle()), "{} idle", db.idle());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// An error from the work comes back as it is, and the connection
    /// stays usable.
    #[tokio::test]
    async fn errors_come_back_and_the_connection_stays() {
        let (dir, db) = temp_db(1);
        let missing = db.call(|store| store.sensor_ids("nothing/here")).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );
        assert_eq!(db.idle(), 1);
        db.call(|store| store.generation()).await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
