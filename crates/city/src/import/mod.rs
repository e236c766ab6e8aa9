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
        // Counted from the byte offset, which after a CRLF points at the LF (so the reader's own
        // line count is one short there).
        let offset = record.position().map_or(0, |p| p.byte() as usize + 1).min(decoded.text.len());
        let line = 1 + decoded.text.as_bytes()[..offset].iter().filter(|b| **b == b'\n').count() as u64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Prepared {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        prepare(&std::fs::read(&path).unwrap(), None).unwrap()
    }

    fn value<'a>(e: &'a Value, attr: &str) -> &'a Value {
        &e[attr]["value"]
    }

    fn reasons(findings: &[Finding]) -> Vec<(u64, String, String)> {
        findings.iter().map(|f| (f.line, f.column.clone().unwrap_or_default(), f.reason.clone())).collect()
    }

    #[test]
    fn new_evacuation_sites_follow_the_datamodels_mapping_and_report_every_defect() {
        let p = fixture("evacuation_space_new_utf8.csv");
        let r = &p.report;
        assert_eq!((r.dataset, r.generation, r.encoding), (DatasetKind::EvacuationSpace, Generation::New, "UTF-8"));
        assert_eq!((r.rows, r.accepted), (6, 3));
        assert_eq!(
            reasons(&r.rejected),
            [
                (4, "緯度".into(), "no coordinates".into()),
                (5, "想定収容人数".into(), "not a whole number".into()),
                (6, "ID".into(), "required value missing".into()),
                (6, "名称".into(), "required value missing".into()),
            ]
        );
        assert_eq!(
            reasons(&r.repaired),
            [
                (3, "全国地方公共団体コード".into(), "lost leading zero restored: 012131".into()),
                (3, "緯度".into(), "latitude and longitude were swapped".into()),
                (7, "全国地方公共団体コード".into(), "check digit added to a five-digit code: 012131".into()),
            ]
        );
        let hall = &p.entities[0];
        assert_eq!(hall["id"], "urn:ngsi-ld:EvacuationSite:012131-0001");
        assert_eq!(hall["type"], "EvacuationSite");
        assert_eq!(*value(hall, "name"), "苫小牧市民会館");
        assert_eq!(*value(hall, "nameEn"), "Tomakomai Civic Hall");
        assert_eq!(*value(hall, "externalSiteId"), "0001");
        assert_eq!(*value(hall, "hazardTypes"), json!(["flood", "earthquake", "greatFire", "eruption"]));
        assert_eq!(*value(hall, "alsoDesignatedShelter"), true);
        assert_eq!(*value(hall, "maxCapacity"), 1200);
        assert_eq!(*value(hall, "targetAreas"), json!(["旭町町内会", "若草町内会"]));
        assert_eq!(*value(hall, "elevation"), 7.5);
        assert_eq!(value(hall, "location")["coordinates"], json!([141.6036, 42.6342]));
        assert_eq!(value(hall, "address")["abrMachiazaId"], "0008001");
        assert_eq!(value(hall, "address")["addressText"], "北海道苫小牧市旭町3丁目2-2");
        let school = &p.entities[1];
        assert_eq!(school["id"], "urn:ngsi-ld:EvacuationSite:012131-0002");
        assert_eq!(value(school, "location")["coordinates"], json!([141.612, 42.6405]));
        assert_eq!(*value(school, "maxCapacity"), 600);
        assert_eq!(*value(school, "alsoDesignatedShelter"), false);
        assert!(p.entities[2].get("maxCapacity").is_none(), "'-' is no value");
    }

    #[test]
    fn old_headers_bom_and_shift_jis_are_read() {
        let p = fixture("evacuation_space_old_bom.csv");
        assert_eq!((p.report.generation, p.report.encoding, p.report.accepted), (Generation::Old, "UTF-8 (BOM)", 2));
        assert_eq!(p.entities[0]["id"], "urn:ngsi-ld:EvacuationSite:012131-1");
        assert_eq!(value(&p.entities[0], "address")["addressText"], "北海道苫小牧市北栄町1丁目");

        let p = fixture("aed_old_sjis.csv");
        assert_eq!((p.report.dataset, p.report.encoding), (DatasetKind::Aed, "Shift_JIS"));
        assert_eq!(p.report.accepted, 2);
        let aed = &p.entities[0];
        assert_eq!(aed["id"], "urn:ngsi-ld:AED:012131-A001");
        assert_eq!(*value(aed, "installationPosition"), "1階 総合案内横");
        assert_eq!(*value(aed, "pediatricSupport"), true);
        assert_eq!(*value(aed, "openingTime"), "08:45");
        assert_eq!(*value(&p.entities[1], "openingTime"), "24:00");
        assert_eq!(
            reasons(&p.report.rejected),
            [
                (4, "設置位置".into(), "required value missing".into()),
                (4, "小児対応設備の有無".into(), "expected 有 or 無".into())
            ]
        );

        let p = fixture("preschool_old_sjis.csv");
        assert_eq!(p.report.dataset, DatasetKind::Preschool);
        assert_eq!(*value(&p.entities[0], "capacity"), 100);
        assert_eq!(*value(&p.entities[0], "temporaryCare"), true);
        assert_eq!(*value(&p.entities[0], "facilityType"), "認可私立保育所");
    }

    #[test]
    fn half_width_headers_and_other_datasets_are_recognised() {
        let p = fixture("public_toilet_new_halfwidth.csv");
        assert_eq!((p.report.dataset, p.report.generation), (DatasetKind::PublicToilet, Generation::New));
        let t = &p.entities[0];
        assert_eq!(t["id"], "urn:ngsi-ld:PublicToilet:012131-T001");
        assert_eq!((value(t, "maleToilets"), value(t, "maleUrinals")), (&json!(3), &json!(2)));
        assert_eq!((value(t, "accessibleToilets"), value(t, "ostomateFacilities")), (&json!(1), &json!(false)));

        let p = fixture("public_facility_old.csv");
        assert_eq!(p.report.dataset, DatasetKind::PublicFacility);
        assert_eq!(*value(&p.entities[0], "accessibility"), json!(["車椅子対応トイレ", "エレベーター"]));
        assert_eq!(*value(&p.entities[0], "alternateName"), "中央図書館");
    }

    #[test]
    fn unreadable_files_are_errors_and_duplicate_ids_are_rejected() {
        assert!(matches!(prepare(b"", None), Err(ImportError::Empty)));
        assert!(matches!(prepare(b"a,b\n1,2\n", None), Err(ImportError::UnknownDataset(_))));
        assert!(matches!(prepare(b"\xff\xff\xfe\xfe\x80", None), Err(ImportError::Encoding)));
        let csv =
            "全国地方公共団体コード,ID,名称,緯度,経度,想定収容人数\n012131,1,a,42.6,141.6,1\n012131,1,b,42.6,141.6,2\n";
        let p = prepare(csv.as_bytes(), None).unwrap();
        assert_eq!(reasons(&p.report.rejected), [(3, String::new(), "the same id as line 2".into())]);
    }
}
