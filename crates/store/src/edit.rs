//! Changes made from the web interface and the API (not file-managed):
//! sensors, servers, groups and maintenance windows. Items declared in a
//! configuration file are changed there, never here.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use portwatch_core::config::{Overrides, WindowDef};

impl Store {
    /// Adds a sensor from the web interface or the API (not file-managed):
    /// the server is created if it does not exist. Returns the sensor's id.
    pub fn add_sensor(
        &mut self,
        server: &str,
        host: &portwatch_probe::Host,
        port: u16,
        name: &str,
        overrides: &Overrides,
    ) -> Result<i64, StoreError> {
        Store::check_names("the server name", [server])?;
        Store::check_names("the sensor name", [name])?;
        let path = self.path.clone();
        let sqlite = super::sqlite_error(&path);
        let tx = self.conn.transaction().map_err(sqlite)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT host FROM servers WHERE name = ?1 AND retired_at IS NULL",
                [server],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite)?;
        if let Some(existing) = existing.filter(|h| *h != host.to_string()) {
            return Err(StoreError::Conflict(format!(
                "the server '{server}' has the host {existing}, not {host}: leave the host out, give {existing}, or change the server's host first"
            )));
        }
        let server_id: i64 = tx
            .query_row(
                "INSERT INTO servers (name, host) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET retired_at = NULL RETURNING id",
                params![server, host.to_string()],
                |r| r.get(0),
            )
            .map_err(sqlite)?;
        let id: i64 = tx
            .query_row(
                "INSERT INTO sensors (server_id, name, port, settings) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (server_id, name) DO UPDATE SET port = ?3, settings = ?4, retired_at = NULL RETURNING id",
                params![server_id, name, port, serde_json::to_string(&overrides).expect("settings serialise")],
                |r| r.get(0),
            )
            .map_err(sqlite)?;
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'config_generation'",
            [],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(id)
    }

    /// The settings of a sensor as stored (its own overrides, not what it
    /// inherits), its port, `expect_closed`, and whether a file manages it.
    pub fn sensor_settings(&self, id: i64) -> Result<(u16, bool, Overrides, bool), StoreError> {
        let row: Option<(u16, bool, String, bool)> = self
            .conn
            .query_row(
                "SELECT port, expect_closed, settings, managed FROM sensors WHERE id = ?1 AND retired_at IS NULL",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(self.sqlite())?;
        let (port, expect_closed, settings, managed) =
            row.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let overrides = serde_json::from_str(&settings)
            .map_err(|e| StoreError::Damaged(self.path.clone(), e.to_string()))?;
        Ok((port, expect_closed, overrides, managed))
    }

    /// Changes a sensor made in the web interface or the API. File-managed
    /// sensors are changed in their file. A dependency must name an active
    /// sensor and must not close a cycle.
    pub fn update_sensor(
        &mut self,
        id: i64,
        port: u16,
        expect_closed: bool,
        overrides: &Overrides,
    ) -> Result<(), StoreError> {
        let (_, _, _, managed) = self.sensor_settings(id)?;
        if managed {
            return Err(StoreError::Conflict(
                "this sensor is declared in the configuration file: change it there".into(),
            ));
        }
        self.check_dependency(overrides)?;
        let sensor_path = self.sensor_path(id)?;
        self.refuse_cycle(|config| set_sensor_overrides(config, &sensor_path, overrides))?;
        let path = self.path.clone();
        let sqlite = super::sqlite_error(&path);
        let tx = self.conn.transaction().map_err(sqlite)?;
        tx.execute(
            "UPDATE sensors SET port = ?2, expect_closed = ?3, settings = ?4 WHERE id = ?1",
            params![
                id,
                port,
                expect_closed,
                serde_json::to_string(overrides).expect("settings serialise")
            ],
        )
        .map_err(sqlite)?;
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'config_generation'",
            [],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(())
    }

    /// Removes a sensor made in the web interface or the API from
    /// monitoring (its history is kept).
    pub fn retire_sensor(&mut self, id: i64) -> Result<(), StoreError> {
        let (_, _, _, managed) = self.sensor_settings(id)?;
        if managed {
            return Err(StoreError::Conflict(
                "this sensor is declared in the configuration file: remove it there".into(),
            ));
        }
        let now = jiff::Timestamp::now().as_millisecond();
        self.conn
            .execute(
                "UPDATE sensors SET retired_at = ?2 WHERE id = ?1",
                params![id, now],
            )
            .map_err(self.sqlite())?;
        self.conn
            .execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'config_generation'",
                [],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }

    pub(super) fn bump_generation(&self) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'config_generation'",
                [],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }

    fn refuse_managed(&self, table: &str, key: &str, value: &str) -> Result<(), StoreError> {
        let managed: Option<bool> = self
            .conn
            .query_row(
                &format!("SELECT managed FROM {table} WHERE {key} = ?1 AND retired_at IS NULL"),
                [value],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sqlite())?;
        if managed == Some(true) {
            return Err(StoreError::Conflict(format!(
                "'{value}' is declared in the configuration file: change it there"
            )));
        }
        Ok(())
    }

    /// Creates or changes a group (its parent must exist).
    pub fn save_group(&self, path: &str, overrides: &Overrides) -> Result<(), StoreError> {
        let path = group_path(path)?;
        if let Some((parent, _)) = path.rsplit_once('/') {
            let exists: bool = self
                .conn
                .query_row(
                    "SELECT count(*) > 0 FROM groups WHERE path = ?1 AND retired_at IS NULL",
                    [parent],
                    |r| r.get(0),
                )
                .map_err(self.sqlite())?;
            if !exists {
                return Err(StoreError::Conflict(format!(
                    "create the parent group '{parent}' first"
                )));
            }
        }
        self.check_dependency(overrides)?;
        self.refuse_managed("groups", "path", path)?;
        self.refuse_cycle(
            |config| match config.groups.iter_mut().find(|g| g.path == path) {
                Some(group) => group.overrides = overrides.clone(),
                None => config.groups.push(portwatch_core::config::GroupDef {
                    path: path.to_owned(),
                    overrides: overrides.clone(),
                }),
            },
        )?;
        self.conn
            .execute(
                "INSERT INTO groups (path, settings) VALUES (?1, ?2)
                 ON CONFLICT (path) DO UPDATE SET settings = ?2, retired_at = NULL",
                params![
                    path,
                    serde_json::to_string(overrides).expect("settings serialise")
                ],
            )
            .map_err(self.sqlite())?;
        self.bump_generation()
    }

    /// Creates or changes a server.
    pub fn save_server(
        &self,
        name: &str,
        host: &portwatch_probe::Host,
        group: Option<&str>,
        overrides: &Overrides,
        tags: &[String],
    ) -> Result<(), StoreError> {
        let name = server_name(name, group, tags)?;
        if let Some(group) = group {
            let exists: bool = self
                .conn
                .query_row(
                    "SELECT count(*) > 0 FROM groups WHERE path = ?1 AND retired_at IS NULL",
                    [group],
                    |r| r.get(0),
                )
                .map_err(self.sqlite())?;
            if !exists {
                return Err(StoreError::Conflict(format!("there is no group '{group}'")));
            }
        }
        self.check_dependency(overrides)?;
        self.refuse_managed("servers", "name", name)?;
        self.refuse_cycle(|config| {
            if let Some(server) = config.servers.iter_mut().find(|s| s.name == name) {
                server.overrides = overrides.clone();
                server.group = group.map(str::to_owned);
            }
        })?;
        self.conn
            .execute(
                "INSERT INTO servers (name, host, group_path, settings, tags) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET host = ?2, group_path = ?3, settings = ?4, tags = ?5, retired_at = NULL",
                params![name, host.to_string(), group, serde_json::to_string(overrides).expect("settings serialise"), serde_json::to_string(tags).expect("tags serialise")],
            )
            .map_err(self.sqlite())?;
        self.bump_generation()
    }

    /// Removes a group or server made here (and a server's sensors) from
    /// monitoring; history is kept.
    pub fn retire(&self, kind: &str, name: &str) -> Result<(), StoreError> {
        let now = jiff::Timestamp::now().as_millisecond();
        let changed = match kind {
            "group" => {
                self.refuse_managed("groups", "path", name)?;
                let used: bool = self
                    .conn
                    .query_row(
                        "SELECT count(*) > 0 FROM servers WHERE retired_at IS NULL AND (group_path = ?1 OR group_path LIKE ?1 || '/%')",
                        [name],
                        |r| r.get(0),
                    )
                    .map_err(self.sqlite())?;
                if used {
                    return Err(StoreError::Conflict(format!("group '{name}' still holds servers: move or delete them first")));
                }
                self.conn.execute("UPDATE groups SET retired_at = ?2 WHERE path = ?1 AND retired_at IS NULL", params![name, now])
            }
            _ => {
                self.refuse_managed("servers", "name", name)?;
                self.conn
                    .execute(
                        "UPDATE sensors SET retired_at = ?2 WHERE retired_at IS NULL AND server_id = (SELECT id FROM servers WHERE name = ?1)",
                        params![name, now],
                    )
                    .map_err(self.sqlite())?;
                self.conn.execute("UPDATE servers SET retired_at = ?2 WHERE name = ?1 AND retired_at IS NULL", params![name, now])
            }
        }
        .map_err(self.sqlite())?;
        if changed == 0 {
            return Err(StoreError::NotFound(name.to_owned()));
        }
        self.bump_generation()
    }

    /// Adds a maintenance window; every name it covers must exist.
    pub fn add_window(&self, window: &WindowDef) -> Result<(), StoreError> {
        for name in window
            .groups
            .iter()
            .chain(&window.servers)
            .chain(&window.sensors)
        {
            self.sensor_ids(name)?;
        }
        self.conn
            .execute(
                "INSERT INTO maintenance (name, rule, groups, servers, sensors) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    window.name,
                    serde_json::to_string(&window.rule).expect("rule serialises"),
                    serde_json::to_string(&window.groups).expect("names serialise"),
                    serde_json::to_string(&window.servers).expect("names serialise"),
                    serde_json::to_string(&window.sensors).expect("names serialise")
                ],
            )
            .map_err(self.sqlite())?;
        self.bump_generation()
    }

    /// Maintenance windows with their ids and whether a file manages them.
    pub fn windows(&self) -> Result<Vec<(i64, bool, WindowDef)>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, managed, name, rule, groups, servers, sensors FROM maintenance ORDER BY id")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(self.sqlite())?;
        let mut windows = Vec::new();
        for row in rows {
            let (id, managed, name, rule, groups, servers, sensors) = row.map_err(self.sqlite())?;
            let damaged = |what| StoreError::Damaged(self.path.clone(), what);
            let rule = super::json(&rule).map_err(damaged)?;
            windows.push((
                id,
                managed,
                WindowDef {
                    name,
                    rule,
                    groups: super::json(&groups).map_err(damaged)?,
                    servers: super::json(&servers).map_err(damaged)?,
                    sensors: super::json(&sensors).map_err(damaged)?,
                },
            ));
        }
        Ok(windows)
    }

    /// Deletes a maintenance window made here.
    pub fn delete_window(&self, id: i64) -> Result<(), StoreError> {
        let changed = self
            .conn
            .execute(
                "DELETE FROM maintenance WHERE id = ?1 AND managed = 0",
                [id],
            )
            .map_err(self.sqlite())?;
        if changed == 0 {
            return Err(StoreError::Conflict(
                "no such window, or it is declared in the configuration file".into(),
            ));
        }
        self.bump_generation()
    }

    /// Refuses a dependency on a sensor that does not exist. (Cycles can
    /// only close through sensors, and are checked where a sensor changes.)
    fn check_dependency(&self, overrides: &Overrides) -> Result<(), StoreError> {
        if let Some(dep) = &overrides.depends_on {
            self.sensor_path_id(dep)?;
        }
        Ok(())
    }

    /// Refuses a change that would close a dependency cycle: `change` is
    /// applied to the loaded configuration, which is then checked.
    fn refuse_cycle(
        &self,
        change: impl FnOnce(&mut portwatch_core::config::Config),
    ) -> Result<(), StoreError> {
        let mut loaded = self.load()?;
        change(&mut loaded.config);
        match portwatch_core::config::model::find_cycle(&loaded.config) {
            Some(at) => Err(StoreError::Conflict(format!(
                "that dependency would close a cycle through '{at}'"
            ))),
            None => Ok(()),
        }
    }

    fn sensor_path_id(&self, path: &str) -> Result<i64, StoreError> {
        let not_a_sensor = || {
            StoreError::Conflict(format!(
                "depends_on '{path}' is not a sensor: write server/sensor"
            ))
        };
        let ids = self.sensor_ids(path).map_err(|_| not_a_sensor())?;
        match (path.contains('/'), ids.as_slice()) {
            (true, [id]) => Ok(*id),
            _ => Err(not_a_sensor()),
        }
    }
}

/// A group or server as the configuration page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigItem {
    /// Group path or server name.
    pub name: String,
    /// The server's host (empty for groups).
    pub host: String,
    /// The server's group (empty for groups).
    pub group: String,
    /// Its own settings.
    pub overrides: Overrides,
    /// Declared in a configuration file.
    pub managed: bool,
}

impl Store {
    /// Active groups (`servers == false`) or servers.
    pub fn config_items(&self, servers: bool) -> Result<Vec<ConfigItem>, StoreError> {
        let sql = if servers {
            "SELECT name, host, coalesce(group_path, ''), settings, managed FROM servers WHERE retired_at IS NULL ORDER BY name"
        } else {
            "SELECT path, '', '', settings, managed FROM groups WHERE retired_at IS NULL ORDER BY path"
        };
        let mut statement = self.conn.prepare(sql).map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| {
                Ok(ConfigItem {
                    name: r.get(0)?,
                    host: r.get(1)?,
                    group: r.get(2)?,
                    overrides: r.get::<_, super::Json<_>>(3)?.0,
                    managed: r.get(4)?,
                })
            })
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }
}

/// A group path as given in the interface, checked and trimmed.
pub(crate) fn group_path(path: &str) -> Result<&str, StoreError> {
    Store::check_names("the group name", [path])?;
    let path = path.trim().trim_matches('/');
    if path.is_empty() || path.split('/').any(|p| p.trim().is_empty()) {
        return Err(StoreError::Conflict(
            "give the group a name; nest groups with '/', e.g. Production/Web".into(),
        ));
    }
    Ok(path)
}

/// A server name as given in the interface (with its group and tags),
/// checked and trimmed.
pub(crate) fn server_name<'a>(
    name: &'a str,
    group: Option<&str>,
    tags: &[String],
) -> Result<&'a str, StoreError> {
    Store::check_names("the server name", [name])?;
    Store::check_names("the group name", group)?;
    Store::check_names("the tag", tags.iter().map(String::as_str))?;
    let name = name.trim();
    if name.is_empty() || name.contains('/') {
        return Err(StoreError::Conflict(
            "give the server a name without '/'".into(),
        ));
    }
    Ok(name)
}

/// Gives the sensor at `path` (`server/sensor`) in `config` new settings:
/// the change whose dependency cycle is checked before it is stored.
pub(crate) fn set_sensor_overrides(
    config: &mut portwatch_core::config::Config,
    path: &str,
    overrides: &Overrides,
) {
    let Some((server_name, sensor_name)) = path.split_once('/') else {
        return;
    };
    let sensor = config
        .servers
        .iter_mut()
        .filter(|s| s.name == server_name)
        .flat_map(|s| s.sensors.iter_mut())
        .find(|s| s.name == sensor_name);
    if let Some(sensor) = sensor {
        sensor.overrides = overrides.clone();
    }
}
