//! ISO 4217 alphabetic codes in current use, with their minor-unit exponents.
//!
//! The table is static on purpose: a currency code is part of a money amount, and accepting a
//! code that no bank knows would let a typo ("IRD") become a separate, unreconcilable balance.

/// `(code, minor-unit exponent)`, sorted by code for binary search.
#[rustfmt::skip]
pub(crate) const ISO_4217: &[(&str, u8)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2),
    ("AUD", 2), ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2),
    ("BHD", 3), ("BIF", 0), ("BMD", 2), ("BND", 2), ("BOB", 2), ("BOV", 2), ("BRL", 2),
    ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2), ("BZD", 2), ("CAD", 2), ("CDF", 2),
    ("CHE", 2), ("CHF", 2), ("CHW", 2), ("CLF", 4), ("CLP", 0), ("CNY", 2), ("COP", 2),
    ("COU", 2), ("CRC", 2), ("CUP", 2), ("CVE", 2), ("CZK", 2), ("DJF", 0), ("DKK", 2),
    ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2), ("EUR", 2), ("FJD", 2),
    ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2), ("GMD", 2), ("GNF", 0),
    ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2), ("HUF", 2), ("IDR", 2),
    ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2), ("JOD", 3),
    ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0),
    ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2),
    ("LSL", 2), ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2),
    ("MNT", 2), ("MOP", 2), ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2),
    ("MXV", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2), ("NGN", 2), ("NIO", 2), ("NOK", 2),
    ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2), ("PGK", 2), ("PHP", 2),
    ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2), ("RUB", 2),
    ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2),
    ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2),
    ("SYP", 2), ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2),
    ("TRY", 2), ("TTD", 2), ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2),
    ("USN", 2), ("UYI", 0), ("UYU", 2), ("UYW", 4), ("UZS", 2), ("VED", 2), ("VES", 2),
    ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XCG", 2), ("XOF", 0),
    ("XPF", 0), ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

/// Every code in current use with its minor-unit exponent (for clients that show amounts: the
/// same digits the services count in).
pub fn minor_unit_exponents() -> &'static [(&'static str, u8)] {
    ISO_4217
}

/// Every code's exponent by its letters' place, `A`–`Z` each: 26³ bytes, built at compile
/// time, so a currency is checked in one lookup (every transaction has one).
const UNKNOWN: u8 = u8::MAX;
static EXPONENTS: [u8; 26 * 26 * 26] = exponent_table();

const fn letters_index(code: [u8; 3]) -> Option<usize> {
    let mut index = 0;
    let mut position = 0;
    while position < 3 {
        let letter = code[position];
        if !letter.is_ascii_uppercase() {
            return None;
        }
        index = index * 26 + (letter - b'A') as usize;
        position += 1;
    }
    Some(index)
}

const fn exponent_table() -> [u8; 26 * 26 * 26] {
    let mut table = [UNKNOWN; 26 * 26 * 26];
    let mut entry = 0;
    while entry < ISO_4217.len() {
        let (code, exponent) = ISO_4217[entry];
        let bytes = code.as_bytes();
        match letters_index([bytes[0], bytes[1], bytes[2]]) {
            Some(index) => table[index] = exponent,
            None => panic!("an ISO 4217 code is three capital letters"),
        }
        entry += 1;
    }
    table
}

/// The minor-unit exponent of a known code (its three bytes), or `None` for an unknown one.
pub(crate) fn exponent_of_code(code: [u8; 3]) -> Option<u8> {
    let exponent = EXPONENTS[letters_index(code)?];
    (exponent != UNKNOWN).then_some(exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in ISO_4217.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} must sort before {}", pair[0].0, pair[1].0);
        }
    }

    fn exponent_of(code: &str) -> Option<u8> {
        exponent_of_code(<[u8; 3]>::try_from(code.as_bytes()).ok()?)
    }

    #[test]
    fn exponents_of_well_known_codes() {
        assert_eq!(exponent_of("IDR"), Some(2));
        assert_eq!(exponent_of("JPY"), Some(0));
        assert_eq!(exponent_of("KWD"), Some(3));
        assert_eq!(exponent_of("XXX"), None);
        assert_eq!(exponent_of("idr"), None);
        assert_eq!(exponent_of("ID1"), None);
        let known = EXPONENTS.iter().filter(|&&exponent| exponent != UNKNOWN).count();
        assert_eq!(known, ISO_4217.len(), "one entry per code");
        for (code, exponent) in ISO_4217 {
            assert_eq!(exponent_of(code), Some(*exponent), "{code}");
        }
    }
}
