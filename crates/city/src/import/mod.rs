//! Importing the Digital Agency's municipal standard open datasets (自治体標準オープンデータセット, and
//! the older 推奨データセット) from CSV into NGSI-LD entities.
//!
//! [`prepare`] reads a file into entities and a [`Report`]: the encoding is sniffed ([`decode`]),
//! the dataset and header generation are recognised from the header row ([`dataset`]), each row is
//! mapped ([`mapping`]); rows that cannot be imported are listed with line, column and reason, and
//! the defects that could be repaired (lost leading zeros, missing check digits, swapped latitude
//! and longitude) are repaired and listed too. Writing is [`crate::broker`]'s job.

pub mod code;
pub mod dataset;
pub mod decode;
pub mod mapping;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::broker::SyncCounts;
pub use dataset::{DatasetKind, Generation};

/// Why a file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The bytes are neither UTF-8, UTF-16 with a BOM, nor Shift_JIS.
    #[error("the file is not text in UTF-8, UTF-16 or Shift_JIS")]
    Encoding,
    /// The file has no header row.
    #[error("the file is empty")]
    Empty,
    /// The header row matches no known dataset.
    #[error("the header row matches no known dataset; name it with --dataset (one of {0})")]
    UnknownDataset(String),
    /// The CSV is malformed.
    #[error("line {line}: {message}")]
    Csv {
        /// The line.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// One finding about one row: a rejection or a repair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The line in the file (the header is line 1).
    pub line: u64,
    /// The column, by its header name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The value found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What is wrong, or what was repaired.
    pub reason: String,
}

/// What an import did, as written by `--report`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The dataset.
    pub dataset: DatasetKind,
    /// Its Japanese name.
    pub dataset_name: &'static str,
    /// The entity type its rows become.
    pub entity_type: &'static str,
    /// The header generation.
    pub generation: Generation,
    /// The encoding the file was read in.
    pub encoding: &'static str,
    /// Data rows read.
    pub rows: usize,
    /// Rows turned into entities.
    pub accepted: usize,
    /// Rows that could not be imported, with every reason.
    pub rejected: Vec<Finding>,
    /// Defects that were repaired.
    pub repaired: Vec<Finding>,
    /// Columns of the dataset the file does not have (optional ones only; missing required
    /// values reject the row).
    pub missing_columns: Vec<String>,
    /// What writing to the broker did (absent on a dry run or when nothing was written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<SyncCounts>,
}

/// A file read into entities.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The entities (normalized, without @context), one per accepted row.
    pub entities: Vec<Value>,
    /// The report.
    pub report: Report,
}

/// Reads `bytes` as a CSV file of `kind` (recognised from the header when None).
pub fn prepare(bytes: &[u8], kind: Option<DatasetKind>) -> Result<Prepared, ImportError> {
    let decoded = decode::decode(bytes).ok_or(ImportError::Encoding)?;
    let first_line = decoded.text.lines().next().unwrap_or_default();
    let delimiter = if first_line.contains('\t') && !first_line.contains(',') { b'\t' } else { b',' };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(decoded.text.as_bytes());
    let mut records = reader.records();
    let header: Vec<String> = match records.next() {
        Some(Ok(h)) => h.iter().map(dataset::normalize).collect(),
        Some(Err(e)) => return Err(csv_error(e)),
        None => return Err(ImportError::Empty),
    };
    let kind = match kind.or_else(|| DatasetKind::detect(&header)) {
        Some(k) => k,
        None => {
            let keys: Vec<&str> = DatasetKind::ALL.iter().map(|k| k.key()).collect();
            return Err(ImportError::UnknownDataset(keys.join(", ")));
        }
    };
    let generation = Generation::detect(&header);
    let columns: HashMap<String, usize> = header.iter().enumerate().rev().map(|(i, h)| (h.clone(), i)).collect();
    let mut report = Report {
        dataset: kind,
        dataset_name: kind.japanese(),
        entity_type: kind.entity_type(),
        generation,
        encoding: decoded.encoding,
        rows: 0,
        accepted: 0,
        rejected: Vec::new(),
        repaired: Vec::new(),
        missing_columns: mapping::missing_columns(kind, &columns),
        written: None,
    };
    let mut entities = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in records {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        report.rows += 1;
        let mut row = mapping::Row::new(&columns, &record, line);
        let entity = mapping::map(kind, &mut row);
        report.repaired.append(&mut row.repaired);
        match entity {
            Some(e) if row.rejected.is_empty() => {
                let id = e["id"].as_str().unwrap_or_default().to_string();
                if let Some(first) = seen.insert(id.clone(), line) {
                    report.rejected.push(Finding {
                        line,
                        column: None,
                        value: Some(id),
                        reason: format!("the same id as line {first}"),
                    });
                    continue;
                }
                report.accepted += 1;
                entities.push(e);
            }
            _ => report.rejected.append(&mut row.rejected),
        }
    }
    Ok(Prepared { entities, report })
}

fn csv_error(e: csv::Error) -> ImportError {
    let line = e.position().map_or(0, |p| p.line());
    ImportError::Csv { line, message: e.to_string() }
}
