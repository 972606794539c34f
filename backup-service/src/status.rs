//! `Get-CsBackupServiceStatus` output, as JSON, and what it means for a failover.
//!
//! The cmdlet returns one object per pool whose `BackupModules` list the Backup Service's
//! modules (`UserServices.PresenceFocus`, `ConfServices.DataConf`, `CentralMgmt.CMSMaster`),
//! each with an `Identity`, an `ExportStatus` and an `ImportStatus`. The meaning of the states
//! is Microsoft's ("What does the status reported by Get-CsBackupServiceStatus mean?",
//! Jens Trier Rasmussen, Microsoft TechNet blog, 2012, archived on learn.microsoft.com):
//!
//! | side | state | meaning |
//! |---|---|---|
//! | export | `FinalState` | no more changes to back up, and all changes imported to the backup pool |
//! | export | `SteadyState` | all available changes can be backed up in one batch (no backlog) |
//! | export | `NonSteadyState` | changes beyond the service's capacity: a backlog builds up |
//! | export | `NotInitialized` | not yet initialised (before the first export; also shown by a pool that is not the CMS master) |
//! | export | `ErrorState` | backing up failed; whether changes are pending is unknown |
//! | import | `NormalState` | importing works |
//! | import | `ErrorState` | importing failed |
//!
//! `FinalState` only holds while the source makes no more changes, so the planned failover
//! waits for it *after* the fence ([`Readiness`]).
//!
//! Accepted shapes (property names compared case-insensitively, as PowerShell does):
//! the status object (`… | ConvertTo-Json -Depth 5`), an array of them (one per pool; the
//! pool is then chosen by `PoolFqdn`), or the module list itself (`$s.BackupModules |
//! ConvertTo-Json`), or a single module object. States must be strings: Windows PowerShell
//! 5.1's `ConvertTo-Json` writes enums as numbers, whose mapping Microsoft does not publish,
//! so a number is refused with the conversion to use instead.

use serde_json::{Map, Value};

pub use failover_core::backup_service::{
    CMS_MODULE, ExportState, ImportState, ModuleStatus, Readiness,
};

/// The status of one pool's Backup Service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceStatus {
    /// `PoolFqdn`, when the output carried it.
    pub pool: Option<String>,
    /// Every module reported.
    pub modules: Vec<ModuleStatus>,
}

impl ServiceStatus {
    /// The CMS module ([`CMS_MODULE`]), or why it is missing.
    pub fn cms(&self) -> Result<&ModuleStatus, ParseError> {
        self.modules
            .iter()
            .find(|m| m.identity.eq_ignore_ascii_case(CMS_MODULE))
            .ok_or_else(|| ParseError::NoCmsModule {
                found: self.modules.iter().map(|m| m.identity.clone()).collect(),
            })
    }
}

/// Why the status command's output cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all.
    #[error(
        "the output is not JSON ({reason}); the command must print `Get-CsBackupServiceStatus … | ConvertTo-Json -Depth 5`"
    )]
    NotJson {
        /// The parser's message.
        reason: String,
    },
    /// JSON, but not a status, a list of statuses or a module list.
    #[error("the JSON is not Get-CsBackupServiceStatus output: {0}")]
    Shape(String),
    /// A state is a number (Windows PowerShell 5.1 writes enums as numbers).
    #[error(
        "{field} of {module} is the number {value}: Windows PowerShell 5.1's ConvertTo-Json writes enums as numbers; print names instead, e.g. `$s.BackupModules | Select-Object Identity, @{{n='ExportStatus';e={{[string]$_.ExportStatus}}}}, @{{n='ImportStatus';e={{[string]$_.ImportStatus}}}} | ConvertTo-Json`, or use PowerShell 7's ConvertTo-Json -EnumsAsStrings"
    )]
    NumericState {
        /// `ExportStatus` or `ImportStatus`.
        field: &'static str,
        /// The module.
        module: String,
        /// The number printed.
        value: String,
    },
    /// A state name this program does not know.
    #[error("{field} of {module} is `{value}`, which is not a documented Backup Service state")]
    UnknownState {
        /// `ExportStatus` or `ImportStatus`.
        field: &'static str,
        /// The module.
        module: String,
        /// What was printed.
        value: String,
    },
    /// Several pools and none (or several) matching the one asked for.
    #[error("the output holds {count} pools ({pools}); {hint}")]
    Pool {
        /// How many pools.
        count: usize,
        /// Their `PoolFqdn`s.
        pools: String,
        /// What to do.
        hint: String,
    },
    /// No `CentralMgmt.CMSMaster` module.
    #[error("no {CMS_MODULE} module in the output (modules: {}); the command must report the Backup Service of the CMS's pool", if found.is_empty() { "none".to_string() } else { found.join(", ") })]
    NoCmsModule {
        /// The modules that were there.
        found: Vec<String>,
    },
}

/// Parses the status command's standard output. `pool` picks one pool (by `PoolFqdn`,
/// case-insensitively) when the output holds several.
pub fn parse(output: &str, pool: Option<&str>) -> Result<ServiceStatus, ParseError> {
    let v: Value =
        serde_json::from_str(output.trim_start_matches('\u{feff}').trim()).map_err(|e| {
            ParseError::NotJson {
                reason: e.to_string(),
            }
        })?;
    match v {
        Value::Array(items) if items.iter().all(is_module) && !items.is_empty() => {
            Ok(ServiceStatus {
                pool: None,
                modules: modules(&items)?,
            })
        }
        Value::Array(items) => {
            let statuses = items
                .iter()
                .map(|i| match i {
                    Value::Object(o) => status(o),
                    other => Err(ParseError::Shape(format!(
                        "an array element is {}, not an object",
                        kind(other)
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            choose(statuses, pool)
        }
        Value::Object(o) if is_module(&Value::Object(o.clone())) => Ok(ServiceStatus {
            pool: None,
            modules: modules(&[Value::Object(o)])?,
        }),
        Value::Object(o) => status(&o),
        other => Err(ParseError::Shape(format!(
            "the output is {}, not an object or an array",
            kind(&other)
        ))),
    }
}

fn choose(
    mut statuses: Vec<ServiceStatus>,
    pool: Option<&str>,
) -> Result<ServiceStatus, ParseError> {
    let names = || {
        statuses
            .iter()
            .map(|s| s.pool.clone().unwrap_or_else(|| "?".into()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match pool {
        Some(p) => {
            let matching: Vec<usize> = (0..statuses.len())
                .filter(|&i| {
                    statuses[i]
                        .pool
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(p))
                })
                .collect();
            if matching.len() == 1 {
                Ok(statuses.swap_remove(matching[0]))
            } else {
                Err(ParseError::Pool {
                    count: statuses.len(),
                    pools: names(),
                    hint: format!(
                        "{} of them is the source pool `{p}`; query it with Get-CsBackupServiceStatus -PoolFqdn {p}",
                        if matching.is_empty() { "none" } else { "more than one" }
                    ),
                })
            }
        }
        None if statuses.len() == 1 => Ok(statuses.remove(0)),
        None => Err(ParseError::Pool {
            count: statuses.len(),
            pools: names(),
            hint: "query one pool (-PoolFqdn <source pool>) or name it in the topology's backup service section".into(),
        }),
    }
}

fn get<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn is_module(v: &Value) -> bool {
    matches!(v, Value::Object(o) if get(o, "Identity").is_some() && get(o, "ExportStatus").is_some())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn status(o: &Map<String, Value>) -> Result<ServiceStatus, ParseError> {
    let pool = get(o, "PoolFqdn")
        .and_then(Value::as_str)
        .map(str::to_string);
    let modules = match get(o, "BackupModules") {
        Some(Value::Array(items)) => modules(items)?,
        Some(m @ Value::Object(_)) => modules(std::slice::from_ref(m))?,
        Some(other) => {
            return Err(ParseError::Shape(format!(
                "BackupModules is {}, not a list of modules (use ConvertTo-Json -Depth 5 so the modules are written out)",
                kind(other)
            )));
        }
        None => {
            return Err(ParseError::Shape(
                "an object without BackupModules (expected the output of Get-CsBackupServiceStatus)"
                    .into(),
            ));
        }
    };
    Ok(ServiceStatus { pool, modules })
}

fn modules(items: &[Value]) -> Result<Vec<ModuleStatus>, ParseError> {
    items.iter().map(module).collect()
}

fn module(v: &Value) -> Result<ModuleStatus, ParseError> {
    let Value::Object(o) = v else {
        return Err(ParseError::Shape(format!(
            "a module is {}, not an object",
            kind(v)
        )));
    };
    let identity = match get(o, "Identity") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ParseError::Shape(format!(
                "a module's Identity is {}, not a string",
                kind(other)
            )));
        }
        None => return Err(ParseError::Shape("a module without Identity".into())),
    };
    let export = state(o, "ExportStatus", &identity, ExportState::from_name)?;
    let import = state(o, "ImportStatus", &identity, ImportState::from_name)?;
    Ok(ModuleStatus {
        identity,
        export,
        import,
    })
}

fn state<T>(
    o: &Map<String, Value>,
    field: &'static str,
    module: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, ParseError> {
    match get(o, field) {
        Some(Value::String(s)) => parse(s.trim()).ok_or_else(|| ParseError::UnknownState {
            field,
            module: module.to_string(),
            value: s.clone(),
        }),
        Some(Value::Number(n)) => Err(ParseError::NumericState {
            field,
            module: module.to_string(),
            value: n.to_string(),
        }),
        Some(other) => Err(ParseError::Shape(format!(
            "{field} of {module} is {}, not a state name",
            kind(other)
        ))),
        None => Err(ParseError::Shape(format!("{module} has no {field}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape `Get-CsBackupServiceStatus -PoolFqdn pool01.contoso.com | ConvertTo-Json
    /// -Depth 5` prints (with PowerShell 7's `-EnumsAsStrings`), trimmed to what we read.
    pub(crate) const SAMPLE: &str = r#"{
      "PoolFqdn": "pool01.contoso.com",
      "BackupModules": [
        { "Identity": "UserServices.PresenceFocus", "ExportStatus": "FinalState", "ImportStatus": "NormalState" },
        { "Identity": "ConfServices.DataConf", "ExportStatus": "SteadyState", "ImportStatus": "NormalState" },
        { "Identity": "CentralMgmt.CMSMaster", "ExportStatus": "NonSteadyState", "ImportStatus": "NormalState" }
      ]
    }"#;

    #[test]
    fn reads_the_status_object() {
        let s = parse(SAMPLE, None).unwrap();
        assert_eq!(s.pool.as_deref(), Some("pool01.contoso.com"));
        assert_eq!(s.modules.len(), 3);
        let cms = s.cms().unwrap();
        assert_eq!(cms.export, ExportState::NonSteadyState);
        assert_eq!(cms.import, ImportState::NormalState);
    }

    #[test]
    fn reads_a_module_list_and_a_single_module_with_any_case() {
        let list = r#"[{"identity":"CentralMgmt.CMSMaster","exportstatus":"finalstate","IMPORTSTATUS":"NormalState"}]"#;
        assert_eq!(
            parse(list, None).unwrap().cms().unwrap().export,
            ExportState::FinalState
        );
        let one = "\u{feff}{\"Identity\":\"CentralMgmt.CMSMaster\",\"ExportStatus\":\"ErrorState\",\"ImportStatus\":\"ErrorState\"}\r\n";
        let m = parse(one, None).unwrap();
        assert_eq!(m.cms().unwrap().import, ImportState::ErrorState);
    }

    #[test]
    fn picks_the_named_pool_among_several() {
        let two = format!(
            "[{SAMPLE}, {}]",
            SAMPLE
                .replace("pool01", "pool02")
                .replace("NonSteadyState", "FinalState")
        );
        let s = parse(&two, Some("POOL02.contoso.com")).unwrap();
        assert_eq!(s.cms().unwrap().export, ExportState::FinalState);
        assert!(matches!(
            parse(&two, None),
            Err(ParseError::Pool { count: 2, .. })
        ));
        assert!(matches!(
            parse(&two, Some("pool03.contoso.com")),
            Err(ParseError::Pool { count: 2, .. })
        ));
    }

    #[test]
    fn refuses_numbers_unknown_states_and_wrong_shapes() {
        let n = r#"{"Identity":"CentralMgmt.CMSMaster","ExportStatus":0,"ImportStatus":0}"#;
        let e = parse(n, None).unwrap_err();
        assert!(matches!(
            e,
            ParseError::NumericState {
                field: "ExportStatus",
                ..
            }
        ));
        assert!(e.to_string().contains("[string]$_.ExportStatus"), "{e}");
        let u = r#"{"Identity":"CentralMgmt.CMSMaster","ExportStatus":"Busy","ImportStatus":"NormalState"}"#;
        assert!(matches!(
            parse(u, None),
            Err(ParseError::UnknownState { value, .. }) if value == "Busy"
        ));
        assert!(matches!(
            parse("garbage", None),
            Err(ParseError::NotJson { .. })
        ));
        assert!(matches!(parse("42", None), Err(ParseError::Shape(_))));
        assert!(matches!(
            parse(r#"{"PoolFqdn":"p","BackupModules":"Microsoft.Rtc.Management…"}"#, None),
            Err(ParseError::Shape(m)) if m.contains("-Depth")
        ));
        let other = r#"[{"Identity":"ConfServices.DataConf","ExportStatus":"FinalState","ImportStatus":"NormalState"}]"#;
        assert!(matches!(
            parse(other, None).unwrap().cms(),
            Err(ParseError::NoCmsModule { found }) if found == ["ConfServices.DataConf"]
        ));
    }
}
