//! Amounts as the customer reads them: the partner's currency in its home locale, from integer
//! minor units (`Rp 3.588,82`, `RM3,588.82`, `3.589 ₫`). The same conventions as the console's
//! (the browsers' CLDR data for the locale the console picks for each currency), written out
//! for the currencies Cezbek's partners use; any other currency reads `CODE 3,588.82`.

use cezbek_schemas::Currency;

/// A currency's symbol and separators in its home locale.
struct Style {
    prefix: &'static str,
    suffix: &'static str,
    group: char,
    decimal: char,
}

/// A plain space where the browsers put a no-break one: a subject line stays ASCII (not
/// RFC 2047-encoded) for the currencies whose symbol is.
const SPACE: &str = " ";

fn style(code: &str) -> Option<Style> {
    let before = |prefix, group, decimal| Style { prefix, suffix: "", group, decimal };
    let after = |suffix, group, decimal| Style { prefix: "", suffix, group, decimal };
    Some(match code {
        "IDR" => before("Rp ", '.', ','),
        "MYR" => before("RM", ',', '.'),
        "SGD" | "USD" | "AUD" | "MXN" | "TWD" => before("$", ',', '.'),
        "PHP" => before("₱", ',', '.'),
        "THB" => before("฿", ',', '.'),
        "VND" => after(" ₫", '.', ','),
        "EUR" => after(" €", '.', ','),
        "GBP" => before("£", ',', '.'),
        "JPY" => before("￥", ',', '.'),
        "CNY" => before("¥", ',', '.'),
        "HKD" => before("HK$", ',', '.'),
        "KRW" => before("₩", ',', '.'),
        "INR" => before("₹", ',', '.'),
        "BRL" => before("R$ ", '.', ','),
        _ => return None,
    })
}

/// `minor` units of `currency`, localized: grouped thousands, the currency's own number of
/// decimals, its symbol where its locale puts it, a minus sign before it all.
pub fn localized(minor: i64, currency: Currency) -> String {
    let code = currency.to_string();
    let fallback = format!("{code}{SPACE}");
    let style = style(&code).unwrap_or(Style { prefix: "", suffix: "", group: ',', decimal: '.' });
    let prefix = if style.prefix.is_empty() && style.suffix.is_empty() {
        fallback.as_str()
    } else {
        style.prefix
    };
    let exponent = u32::from(currency.exponent());
    let magnitude = minor.unsigned_abs();
    let scale = 10u64.pow(exponent);
    let mut text = String::new();
    if minor < 0 {
        text.push('-');
    }
    text.push_str(prefix);
    text.push_str(&grouped(magnitude / scale, style.group));
    if exponent > 0 {
        text.push(style.decimal);
        text.push_str(&format!("{:0width$}", magnitude % scale, width = exponent as usize));
    }
    text.push_str(style.suffix);
    text
}

fn grouped(units: u64, separator: char) -> String {
    let digits = units.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(separator);
        }
        text.push(digit);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(minor: i64, code: &str) -> String {
        localized(minor, Currency::parse(code).unwrap())
    }

    #[test]
    fn amounts_read_as_in_the_currencys_home_locale() {
        assert_eq!(money(358_882, "IDR"), "Rp 3.588,82");
        assert_eq!(money(0, "IDR"), "Rp 0,00");
        assert_eq!(money(-400, "IDR"), "-Rp 4,00");
        assert_eq!(money(123_456_789_012, "IDR"), "Rp 1.234.567.890,12");
        assert_eq!(money(358_882, "MYR"), "RM3,588.82");
        assert_eq!(money(3_589, "VND"), "3.589 ₫");
        assert_eq!(money(358_882, "EUR"), "3.588,82 €");
        assert_eq!(money(3_589, "JPY"), "￥3,589");
        assert_eq!(money(1_234_567, "KWD"), "KWD 1,234.567");
        assert_eq!(money(5, "USD"), "$0.05");
    }
}
