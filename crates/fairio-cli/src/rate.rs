//! Rates on the command line: `1048576`, `512KiB`, `8MiB`, `10MB`, `80Mbit`.

/// Parses a rate in bytes per second. Units: none (bytes), `B`, `KB`/`MB`/`GB` (powers of 1000),
/// `KiB`/`MiB`/`GiB` (powers of 1024), and `Kbit`/`Mbit`/`Gbit` (bits, powers of 1000). Zero and
/// negative rates are refused.
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    const HELP: &str = "expected a positive rate in bytes per second, such as 1048576, 512KiB, 8MiB, 10MB or 80Mbit";
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("'{s}' has no number; {HELP}"));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a number; {HELP}"))?;
    let factor: f64 = match unit.trim() {
        "" | "B" | "B/s" => 1.0,
        "K" | "KB" | "kB" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "Kbit" | "kbit" => 1e3 / 8.0,
        "Mbit" | "mbit" => 1e6 / 8.0,
        "Gbit" | "gbit" => 1e9 / 8.0,
        other => return Err(format!("unknown unit '{other}' in '{s}'; {HELP}")),
    };
    let bytes = (value * factor).round();
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("'{s}' is not a positive rate; {HELP}"));
    }
    Ok(bytes as u64)
}

/// Formats bytes (or bytes per second) with a binary unit.
pub(crate) fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.2} {}", UNITS[i])
    }
}

/// A unit chosen once per run, so that figures do not switch units between frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Unit {
    name: &'static str,
    size: f64,
}

impl Unit {
    /// The largest binary unit of which `typical` is at least one.
    pub(crate) fn for_value(typical: f64) -> Self {
        const UNITS: [(&str, f64); 4] = [
            ("GiB", 1024.0 * 1024.0 * 1024.0),
            ("MiB", 1024.0 * 1024.0),
            ("KiB", 1024.0),
            ("B", 1.0),
        ];
        let (name, size) = UNITS
            .into_iter()
            .find(|&(_, size)| typical >= size)
            .unwrap_or(UNITS[3]);
        Self { name, size }
    }

    /// `v` in this unit, two decimals (none for bytes).
    pub(crate) fn format(self, v: f64) -> String {
        if self.size == 1.0 {
            format!("{v:.0} {}", self.name)
        } else {
            format!("{:.2} {}", v / self.size, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_stays_put_across_values() {
        let u = Unit::for_value(1024.0 * 1024.0);
        assert_eq!(u.format(1023.56 * 1024.0), "1.00 MiB");
        assert_eq!(u.format(2.0 * 1024.0 * 1024.0), "2.00 MiB");
        assert_eq!(
            Unit::for_value(16.0 * 1024.0).format(1024.0 * 1024.0),
            "1024.00 KiB"
        );
        assert_eq!(Unit::for_value(10.0).format(3.0), "3 B");
        assert_eq!(Unit::for_value(0.0).format(3.0), "3 B");
    }

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_rate("1048576"), Ok(1_048_576));
        assert_eq!(parse_rate("512KiB"), Ok(524_288));
        assert_eq!(parse_rate("8MiB"), Ok(8 << 20));
        assert_eq!(parse_rate("10MB"), Ok(10_000_000));
        assert_eq!(parse_rate("80Mbit"), Ok(10_000_000));
        assert_eq!(parse_rate("1.5MiB"), Ok(1_572_864));
    }

    #[test]
    fn refuses_bad_input_with_an_example() {
        // A lower-case b is bits by convention: "b/s" is refused rather than read as bytes.
        for bad in ["0", "-5", "abc", "10XB", "", "0KiB", "100b/s"] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains("8MiB"), "{bad}: {e}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::fuzz_cases(512)))]

        /// Any string: a positive rate or a refusal with an example, never a panic.
        #[test]
        fn fuzz_any_string_gives_a_rate_or_a_refusal(s in any::<String>()) {
            match parse_rate(&s) {
                Ok(r) => prop_assert!(r >= 1),
                Err(e) => prop_assert!(e.contains("8MiB"), "{}", e),
            }
        }

        /// Strings made of the rate alphabet (digits, dots, units, signs, spaces) reach the
        /// parser's every branch; the same holds.
        #[test]
        fn fuzz_rate_like_strings_give_a_rate_or_a_refusal(s in "[0-9.]{0,25}[ ]?(|B|B/s|K|KB|kB|M|MB|G|GB|KiB|MiB|GiB|Kbit|kbit|Mbit|mbit|Gbit|gbit|b|x|-|e9)") {
            match parse_rate(&s) {
                Ok(r) => prop_assert!(r >= 1),
                Err(e) => prop_assert!(e.contains("8MiB"), "{}", e),
            }
        }

        /// What `human` prints of a whole number of KiB parses back to it.
        #[test]
        fn whole_kib_round_trip(k in 1u64..(1 << 40)) {
            prop_assert_eq!(parse_rate(&format!("{k}KiB")), Ok(k * 1024));
        }
    }
}
