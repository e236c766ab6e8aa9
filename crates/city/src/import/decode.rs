//! Turning a file's bytes into text: what municipalities publish is UTF-8 with or without a BOM,
//! Shift_JIS (CP932), and now and then UTF-16 with a BOM.

/// The text of a file and the encoding it was read in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The text, without a BOM.
    pub text: String,
    /// `UTF-8`, `UTF-8 (BOM)`, `Shift_JIS`, `UTF-16LE (BOM)` or `UTF-16BE (BOM)`.
    pub encoding: &'static str,
}

/// Decodes `bytes`: a BOM decides; otherwise valid UTF-8 is UTF-8 and anything else is read as
/// Shift_JIS (the WHATWG decoder, which is CP932). `None` when the bytes are neither.
pub fn decode(bytes: &[u8]) -> Option<Decoded> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8(rest.to_vec()).ok().map(|text| Decoded { text, encoding: "UTF-8 (BOM)" });
    }
    for (bom, enc, name) in [
        (&b"\xFF\xFE"[..], encoding_rs::UTF_16LE, "UTF-16LE (BOM)"),
        (&b"\xFE\xFF"[..], encoding_rs::UTF_16BE, "UTF-16BE (BOM)"),
    ] {
        if let Some(rest) = bytes.strip_prefix(bom) {
            let (text, had_errors) = enc.decode_without_bom_handling(rest);
            return (!had_errors).then(|| Decoded { text: text.into_owned(), encoding: name });
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Some(Decoded { text: text.to_string(), encoding: "UTF-8" });
    }
    let (text, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(bytes);
    (!had_errors).then(|| Decoded { text: text.into_owned(), encoding: "Shift_JIS" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_encoding() {
        let text = "名称,緯度\n市役所,42.6\n";
        assert_eq!(decode(text.as_bytes()).unwrap().encoding, "UTF-8");
        let bom = [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat();
        assert_eq!(decode(&bom).unwrap(), Decoded { text: text.into(), encoding: "UTF-8 (BOM)" });
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(text);
        assert_eq!(decode(&sjis).unwrap(), Decoded { text: text.into(), encoding: "Shift_JIS" });
        let utf16: Vec<u8> = [0xFF, 0xFE].into_iter().chain(text.encode_utf16().flat_map(u16::to_le_bytes)).collect();
        assert_eq!(decode(&utf16).unwrap().text, text);
        assert!(decode(b"\xFF\xFF\xFF").is_none());
    }
}
