//! 全国地方公共団体コード: six digits, the last a check digit (weights 6,5,4,3,2 on the first five;
//! check = (11 − sum mod 11) mod 10). Published files lose leading zeros and drop the check digit;
//! [`repair`] restores what can be restored unambiguously.

/// The check digit of a five-digit code.
pub fn check_digit(five: &str) -> Option<char> {
    let digits: Vec<u32> = five.chars().map(|c| c.to_digit(10)).collect::<Option<_>>()?;
    if digits.len() != 5 {
        return None;
    }
    let sum: u32 = digits.iter().zip([6, 5, 4, 3, 2]).map(|(d, w)| d * w).sum();
    char::from_digit((11 - sum % 11) % 10, 10)
}

/// Whether `code` is a valid six-digit code.
pub fn is_valid(code: &str) -> bool {
    code.len() == 6 && code.is_char_boundary(5) && check_digit(&code[..5]) == code.chars().last()
}

/// The six-digit code `raw` stands for, with what was repaired (None: it was right), or an error.
pub fn repair(raw: &str) -> Result<(String, Option<&'static str>), &'static str> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.chars().all(|c| c.is_ascii_digit()) {
        return Err("not a local government code (digits expected)");
    }
    let with_check = |five: &str| format!("{five}{}", check_digit(five).unwrap_or('0'));
    match raw.len() {
        6 if is_valid(raw) => Ok((raw.to_string(), None)),
        6 => Ok((with_check(&raw[..5]), Some("wrong check digit corrected"))),
        // A six-digit code that lost its leading zero (92011 → 092011), else a five-digit code
        // without its check digit (13101 → 131016).
        5 if is_valid(&format!("0{raw}")) => Ok((format!("0{raw}"), Some("lost leading zero restored"))),
        5 => Ok((with_check(raw), Some("check digit added to a five-digit code"))),
        // A five-digit code that lost its leading zero (1213 → 012131).
        4 => Ok((with_check(&format!("0{raw}")), Some("leading zero and check digit restored"))),
        _ => Err("not a local government code (5 or 6 digits expected)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_what_publishers_get_wrong() {
        let check = |raw: &str, expected: Result<(&str, bool), &str>| {
            let got = repair(raw).map(|(c, r)| (c, r.is_some()));
            assert_eq!(got, expected.map(|(c, r)| (c.to_string(), r)), "{raw}");
        };
        check("012131", Ok(("012131", false)));
        check("131016", Ok(("131016", false)));
        check("012130", Ok(("012131", true)));
        check("92011", Ok(("092011", true)));
        check("13101", Ok(("131016", true)));
        check("01213", Ok(("012131", true)));
        check("1213", Ok(("012131", true)));
        check("12", Err("not a local government code (5 or 6 digits expected)"));
        check("苫小牧", Err("not a local government code (digits expected)"));
        assert!(is_valid("010006") && is_valid("011002") && !is_valid("01100"));
    }
}
