//! The datasets the importer knows, and recognising them (and their header generation) from the
//! header row, after NFKC normalisation (so half-width katakana and full-width brackets match).

use unicode_normalization::UnicodeNormalization;

/// A municipal standard open dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// 指定緊急避難場所一覧 → `EvacuationSite` (datamodels.jp).
    EvacuationSpace,
    /// AED設置箇所一覧 → `AED`.
    Aed,
    /// 公共施設一覧 → `PublicFacility`.
    PublicFacility,
    /// 子育て施設一覧 → `ChildcareFacility`.
    Preschool,
    /// 公衆トイレ一覧 → `PublicToilet`.
    PublicToilet,
}

impl DatasetKind {
    /// Every kind.
    pub const ALL: [DatasetKind; 5] = [
        DatasetKind::EvacuationSpace,
        DatasetKind::Aed,
        DatasetKind::PublicFacility,
        DatasetKind::Preschool,
        DatasetKind::PublicToilet,
    ];

    /// The English key publishers use in file names (`012131_evacuation_space.csv`).
    pub fn key(self) -> &'static str {
        match self {
            DatasetKind::EvacuationSpace => "evacuation_space",
            DatasetKind::Aed => "aed",
            DatasetKind::PublicFacility => "public_facility",
            DatasetKind::Preschool => "preschool",
            DatasetKind::PublicToilet => "public_toilet",
        }
    }

    /// The dataset's Japanese name.
    pub fn japanese(self) -> &'static str {
        match self {
            DatasetKind::EvacuationSpace => "指定緊急避難場所一覧",
            DatasetKind::Aed => "AED設置箇所一覧",
            DatasetKind::PublicFacility => "公共施設一覧",
            DatasetKind::Preschool => "子育て施設一覧",
            DatasetKind::PublicToilet => "公衆トイレ一覧",
        }
    }

    /// The NGSI-LD entity type its rows become.
    pub fn entity_type(self) -> &'static str {
        match self {
            DatasetKind::EvacuationSpace => "EvacuationSite",
            DatasetKind::Aed => "AED",
            DatasetKind::PublicFacility => "PublicFacility",
            DatasetKind::Preschool => "ChildcareFacility",
            DatasetKind::PublicToilet => "PublicToilet",
        }
    }

    /// Recognises the dataset from its (normalised) header row.
    pub fn detect(header: &[String]) -> Option<DatasetKind> {
        let has = |name: &str| header.iter().any(|h| h == name);
        if has("男性トイレ総数") || has("女性トイレ総数") {
            Some(DatasetKind::PublicToilet)
        } else if has("想定収容人数") || header.iter().any(|h| h.starts_with("災害種別_")) {
            Some(DatasetKind::EvacuationSpace)
        } else if has("小児対応設備の有無") || has("小児対応機器設備の有無") {
            Some(DatasetKind::Aed)
        } else if has("収容定員") || has("受入年齢") || has("一時預かりの有無") {
            Some(DatasetKind::Preschool)
        } else if has("名称_通称") || has("POIコード") || has("バリアフリー情報") || has("種別") {
            Some(DatasetKind::PublicFacility)
        } else {
            None
        }
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<DatasetKind, String> {
        let s = normalize(s);
        DatasetKind::ALL.into_iter().find(|k| k.key() == s || k.japanese() == s).ok_or_else(|| {
            let keys: Vec<&str> = DatasetKind::ALL.iter().map(|k| k.key()).collect();
            format!("unknown dataset {s:?} (one of {})", keys.join(", "))
        })
    }
}

/// Which generation of the standard a header row follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Generation {
    /// 自治体標準オープンデータセット: starts with `全国地方公共団体コード,ID`.
    New,
    /// 推奨データセット: starts with `都道府県コード又は市区町村コード,NO` or `NO`.
    Old,
}

impl Generation {
    /// The generation of a (normalised) header row.
    pub fn detect(header: &[String]) -> Generation {
        if header.iter().any(|h| h == "全国地方公共団体コード" || h == "ID") {
            Generation::New
        } else {
            Generation::Old
        }
    }
}

/// NFKC, trimmed: how header names (and numbers) are compared.
pub fn normalize(s: &str) -> String {
    s.nfkc().collect::<String>().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(line: &str) -> Vec<String> {
        line.split(',').map(normalize).collect()
    }

    #[test]
    fn detects_datasets_and_generations_from_headers() {
        let check = |line: &str, kind: Option<DatasetKind>, generation: Generation| {
            let h = header(line);
            assert_eq!((DatasetKind::detect(&h), Generation::detect(&h)), (kind, generation), "{line}");
        };
        check(
            "全国地方公共団体コード,ID,名称,緯度,経度,災害種別_津波,想定収容人数",
            Some(DatasetKind::EvacuationSpace),
            Generation::New,
        );
        check("NO,名称,名称_カナ,住所,緯度,経度,災害種別_洪水", Some(DatasetKind::EvacuationSpace), Generation::Old);
        check(
            "都道府県コード又は市区町村コード,NO,名称,設置位置,小児対応設備の有無",
            Some(DatasetKind::Aed),
            Generation::Old,
        );
        check("全国地方公共団体ｺｰﾄﾞ,ID,名称,設置位置,男性トイレ総数", Some(DatasetKind::PublicToilet), Generation::New);
        check("都道府県コード又は市区町村コード,NO,名称,種別,収容定員", Some(DatasetKind::Preschool), Generation::Old);
        check(
            "都道府県コード又は市区町村コード,NO,名称,名称_通称,POIコード",
            Some(DatasetKind::PublicFacility),
            Generation::Old,
        );
        check("a,b,c", None, Generation::Old);
        assert_eq!("aed".parse::<DatasetKind>(), Ok(DatasetKind::Aed));
        assert_eq!("子育て施設一覧".parse::<DatasetKind>(), Ok(DatasetKind::Preschool));
        assert!("parks".parse::<DatasetKind>().is_err());
    }
}
