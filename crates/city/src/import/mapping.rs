//! From one CSV row to one entity, per dataset: the datamodels.jp mapping for
//! 指定緊急避難場所一覧 (`EvacuationSite`), the Haskap city vocabulary for the others
//! (`docs/city-vocabulary.md`). Both header generations are read through the same column
//! names; where they differ, the alternatives are listed in order.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::dataset::{DatasetKind, normalize};
use super::{Finding, code};
use crate::entity::EntityBuilder;

/// One row being read: its values by column, and what was found wrong or repaired.
pub struct Row<'a> {
    columns: &'a HashMap<String, usize>,
    record: &'a csv::StringRecord,
    line: u64,
    /// Reasons the row cannot be imported.
    pub rejected: Vec<Finding>,
    /// What was repaired.
    pub repaired: Vec<Finding>,
}

const CODE: &[&str] = &["全国地方公共団体コード", "都道府県コード又は市区町村コード", "市区町村コード"];
const ID: &[&str] = &["ID", "NO"];
const NAME_EN: &[&str] = &["名称_英字", "名称_英語"];
const PHONE: &[&str] = &["電話番号"];
const TIME_NOTES: &[&str] = &["利用可能日時特記事項", "利用可能時間特記事項"];

/// The hazard columns of 指定緊急避難場所一覧 and the datamodels.jp `hazardTypes` they stand for.
const HAZARDS: &[(&str, &str)] = &[
    ("災害種別_洪水", "flood"),
    ("災害種別_崖崩れ、土石流及び地滑り", "landslide"),
    ("災害種別_高潮", "stormSurge"),
    ("災害種別_地震", "earthquake"),
    ("災害種別_津波", "tsunami"),
    ("災害種別_大規模な火事", "greatFire"),
    ("災害種別_内水氾濫", "inlandFlood"),
    ("災害種別_火山現象", "eruption"),
];

impl<'a> Row<'a> {
    /// The row `record` at `line`, its columns named by `columns` (normalised header → index).
    pub fn new(columns: &'a HashMap<String, usize>, record: &'a csv::StringRecord, line: u64) -> Row<'a> {
        Row { columns, record, line, rejected: Vec::new(), repaired: Vec::new() }
    }

    /// The first of `names` the file has, and its non-empty trimmed value.
    fn cell(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names.iter().find_map(|n| {
            let i = *self.columns.get(&normalize(n))?;
            let v = self.record.get(i)?.trim();
            // "-" and "－" stand for "none" in the published files.
            (!v.is_empty() && !matches!(v, "-" | "－" | "ー" | "―")).then(|| (*n, v.to_string()))
        })
    }

    /// The text in the first of `names`.
    pub fn text(&self, names: &[&'static str]) -> Option<String> {
        self.cell(names).map(|(_, v)| v)
    }

    /// The text, or a rejection when missing.
    pub fn required(&mut self, names: &[&'static str]) -> Option<String> {
        let v = self.text(names);
        if v.is_none() {
            self.reject(names[0], None, "required value missing");
        }
        v
    }

    fn reject(&mut self, column: &str, value: Option<String>, reason: &str) {
        self.rejected.push(Finding { line: self.line, column: Some(column.into()), value, reason: reason.into() });
    }

    fn repair(&mut self, column: &str, value: String, reason: String) {
        self.repaired.push(Finding { line: self.line, column: Some(column.into()), value: Some(value), reason });
    }

    /// A whole number (commas, full-width digits and a trailing 人/件/台 allowed); unparsable is a rejection.
    pub fn integer(&mut self, names: &[&'static str]) -> Option<i64> {
        let (col, raw) = self.cell(names)?;
        let n = normalize(&raw).replace(',', "");
        let n = n.trim_end_matches(['人', '件', '台', '名']).trim();
        match n.parse::<i64>() {
            Ok(v) if v >= 0 => Some(v),
            _ => {
                self.reject(col, Some(raw), "not a whole number");
                None
            }
        }
    }

    /// A decimal number; unparsable is a rejection.
    pub fn number(&mut self, names: &[&'static str]) -> Option<f64> {
        let (col, raw) = self.cell(names)?;
        let n = normalize(&raw).replace(',', "");
        match n.trim_end_matches('m').trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                self.reject(col, Some(raw), "not a number");
                None
            }
        }
    }

    /// A yes/no column (有/無, あり/なし, 1/0, ○/×); anything else is a rejection.
    pub fn yes_no(&mut self, names: &[&'static str]) -> Option<bool> {
        let (col, raw) = self.cell(names)?;
        match normalize(&raw).as_str() {
            "有" | "あり" | "有り" | "1" | "○" | "〇" | "true" | "TRUE" => Some(true),
            "無" | "なし" | "無し" | "0" | "×" | "false" | "FALSE" => Some(false),
            _ => {
                self.reject(col, Some(raw), "expected 有 or 無");
                None
            }
        }
    }

    /// A flag column: `1` (or any yes) is true, blank is false.
    pub fn flag(&mut self, name: &'static str) -> bool {
        self.cell(&[name]).is_some() && self.yes_no(&[name]).unwrap_or(false)
    }

    /// A `;`-separated list.
    pub fn list(&self, names: &[&'static str]) -> Option<Vec<String>> {
        let v = self.text(names)?;
        let items: Vec<String> =
            v.split([';', '；']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        (!items.is_empty()).then_some(items)
    }

    /// A time of day as `hh:mm` (`9:00`, `９：００`, `24` and `24:00` accepted); other text is kept as
    /// published, since the notes say more than a time would.
    pub fn time(&mut self, names: &[&'static str]) -> Option<String> {
        let (col, raw) = self.cell(names)?;
        let n = normalize(&raw);
        let (h, m) = n.split_once(':').unwrap_or((&n, "00"));
        match (h.parse::<u32>(), m.parse::<u32>()) {
            (Ok(h), Ok(m)) if h <= 24 && m < 60 => {
                let t = format!("{h:02}:{m:02}");
                if t != raw {
                    self.repair(col, raw, format!("time written as {t}"));
                }
                Some(t)
            }
            _ => Some(raw),
        }
    }

    /// The 6-digit code of the publisher, repaired where possible.
    pub fn code(&mut self) -> Option<String> {
        let Some((col, raw)) = self.cell(CODE) else {
            self.reject(CODE[0], None, "required value missing");
            return None;
        };
        match code::repair(&normalize(&raw)) {
            Ok((c, None)) => Some(c),
            Ok((c, Some(what))) => {
                self.repair(col, raw, format!("{what}: {c}"));
                Some(c)
            }
            Err(why) => {
                self.reject(col, Some(raw), why);
                None
            }
        }
    }

    /// The position `[lon, lat]`: both required, in range; swapped columns are put right when that
    /// is unambiguous (the values fit Japan only the other way round).
    pub fn position(&mut self) -> Option<(f64, f64)> {
        let lat = self.cell(&["緯度"]);
        let lon = self.cell(&["経度"]);
        let (Some((_, lat_raw)), Some((_, lon_raw))) = (lat, lon) else {
            self.reject("緯度", None, "no coordinates");
            return None;
        };
        let (lat, lon) = (self.number(&["緯度"])?, self.number(&["経度"])?);
        let japan = |lat: f64, lon: f64| (20.0..=46.0).contains(&lat) && (122.0..=154.0).contains(&lon);
        if japan(lat, lon) {
            return Some((lon, lat));
        }
        if japan(lon, lat) {
            self.repair("緯度", format!("{lat_raw},{lon_raw}"), "latitude and longitude were swapped".into());
            return Some((lat, lon));
        }
        if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) && !(lat == 0.0 && lon == 0.0) {
            return Some((lon, lat));
        }
        self.reject("緯度", Some(format!("{lat_raw},{lon_raw}")), "coordinates out of range");
        None
    }

    /// The address as a datamodels.jp `JapaneseAddress` value.
    pub fn address(&self) -> Option<Value> {
        let mut a = Map::new();
        let mut put = |key: &str, names: &[&'static str]| {
            if let Some(v) = self.text(names) {
                a.insert(key.into(), Value::String(v));
            }
        };
        put("addressText", &["所在地_連結表記", "住所"]);
        put("addressRegion", &["所在地_都道府県", "都道府県名"]);
        put("addressLocality", &["所在地_市区町村", "市区町村名"]);
        put("machiaza", &["所在地_町字"]);
        put("banchi", &["所在地_番地以下"]);
        put("buildingName", &["建物名等(方書)", "方書"]);
        put("postalCode", &["郵便番号"]);
        if let Some(id) = self.text(&["町字ID"]) {
            a.insert("abrMachiazaId".into(), Value::String(id.replace('-', "")));
        }
        if let Some(c) = self.text(&["所在地_全国地方公共団体コード"]).and_then(|c| code::repair(&normalize(&c)).ok())
        {
            a.insert("localGovernmentCode".into(), Value::String(c.0));
        }
        if a.is_empty() {
            return None;
        }
        a.insert("addressCountry".into(), json!("JP"));
        Some(Value::Object(a))
    }
}

/// The columns each dataset's mapping reads beyond the common ones.
fn columns_of(kind: DatasetKind) -> &'static [&'static str] {
    match kind {
        DatasetKind::EvacuationSpace => &[
            "災害種別_洪水",
            "災害種別_崖崩れ、土石流及び地滑り",
            "災害種別_高潮",
            "災害種別_地震",
            "災害種別_津波",
            "災害種別_大規模な火事",
            "災害種別_内水氾濫",
            "災害種別_火山現象",
            "指定避難所との重複",
            "想定収容人数",
        ],
        DatasetKind::Aed => &["設置位置", "利用可能曜日", "開始時間", "終了時間"],
        DatasetKind::PublicFacility => &["種別", "利用可能曜日", "開始時間", "終了時間"],
        DatasetKind::Preschool => &["種別", "収容定員", "受入年齢", "利用可能曜日", "開始時間", "終了時間"],
        DatasetKind::PublicToilet => &["設置位置", "男性トイレ総数", "女性トイレ総数", "男女共用トイレ総数"],
    }
}

/// The dataset's columns (common and its own) the file lacks.
pub fn missing_columns(kind: DatasetKind, columns: &HashMap<String, usize>) -> Vec<String> {
    let common: &[&str] = &["名称", "名称_カナ", "緯度", "経度", "電話番号"];
    common
        .iter()
        .chain(columns_of(kind))
        .filter(|c| !columns.contains_key(&normalize(c)))
        .map(|c| c.to_string())
        .collect()
}

/// The entity of `row` for a dataset of `kind`, or None when the row is rejected (the reasons are
/// in `row.rejected`).
pub fn map(kind: DatasetKind, row: &mut Row<'_>) -> Option<Value> {
    let code = row.code();
    let local = row.required(ID);
    let name = row.required(&["名称"]);
    let position = row.position();
    let (code, local, name, (lon, lat)) = (code?, local?, name?, position?);
    let e = EntityBuilder::new(kind.entity_type(), &format!("{code}-{local}"))
        .prop("name", name)
        .prop("localGovernmentCode", code.as_str())
        .prop_opt("nameKana", row.text(&["名称_カナ"]))
        .prop_opt("address", row.address())
        .point(lon, lat)
        .prop_opt("telephone", row.text(PHONE))
        .prop_opt("url", row.text(&["URL"]))
        .prop_opt("description", row.text(&["備考"]));
    let e = match kind {
        DatasetKind::EvacuationSpace => {
            let hazards: Vec<Value> = HAZARDS.iter().filter(|&&(c, _)| row.flag(c)).map(|(_, h)| json!(h)).collect();
            let e = e
                .prop("externalSiteId", local.as_str())
                .prop_opt("nameEn", row.text(NAME_EN))
                .prop("hazardTypes", Value::Array(hazards))
                .prop("alsoDesignatedShelter", row.flag("指定避難所との重複"))
                .prop_opt("maxCapacity", row.integer(&["想定収容人数"]))
                .prop_opt("targetAreas", row.list(&["対象となる町会・自治会"]));
            match row.number(&["標高"]) {
                Some(m) => e.measure("elevation", m, "MTR"),
                None => e,
            }
        }
        DatasetKind::Aed => e
            .prop("externalId", local.as_str())
            .prop_opt("installationPosition", row.required(&["設置位置"]))
            .prop_opt("operator", row.text(&["団体名"]))
            .prop_opt("availableDays", row.text(&["利用可能曜日"]))
            .prop_opt("openingTime", row.time(&["開始時間"]))
            .prop_opt("closingTime", row.time(&["終了時間"]))
            .prop_opt("availabilityNotes", row.text(TIME_NOTES))
            .prop_opt("pediatricSupport", row.yes_no(&["小児対応設備の有無", "小児対応機器設備の有無"])),
        DatasetKind::PublicFacility => e
            .prop("externalId", local.as_str())
            .prop_opt("alternateName", row.text(&["名称_通称"]))
            .prop_opt("category", row.text(&["種別"]))
            .prop_opt("availableDays", row.text(&["利用可能曜日"]))
            .prop_opt("openingTime", row.time(&["開始時間"]))
            .prop_opt("closingTime", row.time(&["終了時間"]))
            .prop_opt("availabilityNotes", row.text(TIME_NOTES))
            .prop_opt("accessibility", row.list(&["バリアフリー情報"]))
            .prop_opt("operator", row.text(&["団体名"])),
        DatasetKind::Preschool => e
            .prop("externalId", local.as_str())
            .prop_opt("facilityType", row.text(&["種別"]))
            .prop_opt("faxNumber", row.text(&["FAX番号"]))
            .prop_opt("capacity", row.integer(&["収容定員"]))
            .prop_opt("acceptedAges", row.text(&["受入年齢"]))
            .prop_opt("availableDays", row.text(&["利用可能曜日"]))
            .prop_opt("openingTime", row.time(&["開始時間"]))
            .prop_opt("closingTime", row.time(&["終了時間"]))
            .prop_opt("temporaryCare", row.yes_no(&["一時預かりの有無"])),
        DatasetKind::PublicToilet => e
            .prop("externalId", local.as_str())
            .prop_opt("nameEn", row.text(NAME_EN))
            .prop_opt("installationPosition", row.required(&["設置位置"]))
            .prop_opt("maleToilets", row.integer(&["男性トイレ総数"]))
            .prop_opt("maleUrinals", row.integer(&["男性トイレ数(小便器)"]))
            .prop_opt("femaleToilets", row.integer(&["女性トイレ総数"]))
            .prop_opt("unisexToilets", row.integer(&["男女共用トイレ総数"]))
            .prop_opt("accessibleToilets", row.integer(&["バリアフリートイレ数", "多機能トイレ数"]))
            .prop_opt("wheelchairAccessible", row.yes_no(&["車椅子使用者用トイレ有無"]))
            .prop_opt("babyFacilities", row.yes_no(&["乳幼児用設備設置トイレ有無"]))
            .prop_opt("ostomateFacilities", row.yes_no(&["オストメイト設置トイレ有無"]))
            .prop_opt("openingTime", row.time(&["利用開始時間"]))
            .prop_opt("closingTime", row.time(&["利用終了時間"]))
            .prop_opt("availabilityNotes", row.text(TIME_NOTES)),
    };
    Some(e.build())
}
