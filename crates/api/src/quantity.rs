//! Kubernetes resource quantities ("100m", "1.5", "64Mi", "1G", "1e3") and the CPU conversions
//! kubelet derives from them.
//!
//! A quantity is `<signed decimal number><suffix>` where the suffix is a binary SI multiple
//! (`Ki`..`Ei`), a decimal SI one (`n u m "" k M G T P E`) or a decimal exponent (`e3`, `E-2`).
//! Values are kept exact (integer mantissa and powers of ten and two) and converted the way
//! apimachinery's `Quantity.Value()` / `MilliValue()` do: rounding away from zero, so "1.5m" CPU is
//! 2 millicores and "0.5" bytes is 1 byte.

/// Kubelet's CPU constants (pkg/kubelet/cm): shares per CPU and the bounds the kernel accepts.
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const SHARES_PER_CPU: i64 = 1024;
const MILLI_CPU_TO_CPU: i64 = 1000;
/// The smallest CFS quota kubelet sets (1 ms); the kernel rejects less.
const MIN_QUOTA_PERIOD: i64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// apimachinery's `ErrFormatWrong` wording, with the offending text in front.
    #[error("invalid quantity {0:?}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format(String),
    #[error("invalid quantity {0:?}: unable to parse quantity's suffix")]
    Suffix(String),
    #[error("quantity {0:?} is out of range")]
    Range(String),
}

/// A parsed quantity: `(-1)^negative * mantissa * 10^exp10 * 2^exp2`, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

/// At most this many significant digits are kept exactly (10^38 < u128::MAX).
const MAX_DIGITS: usize = 38;

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let format = || QuantityError::Format(text.to_owned());
        let s = text.trim();
        if s.is_empty() {
            return Err(format());
        }
        let (negative, rest) = match s.as_bytes()[0] {
            b'+' => (false, &s[1..]),
            b'-' => (true, &s[1..]),
            _ => (false, s),
        };
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = match number.split_once('.') {
            Some((w, f)) if !f.contains('.') => (w, f),
            Some(_) => return Err(format()),
            None => (number, ""),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(format());
        }
        let (suffix_exp10, exp2) = parse_suffix(suffix).ok_or_else(|| {
            // A suffix made only of allowed characters that is still not a suffix is a suffix
            // error; anything else is a format error (apimachinery distinguishes the two too).
            if suffix.chars().all(|c| "eEinumkKMGTP+-0123456789".contains(c)) {
                QuantityError::Suffix(text.to_owned())
            } else {
                format()
            }
        })?;

        // Significant digits only: leading zeros carry nothing, trailing fraction zeros neither.
        let fraction = fraction.trim_end_matches('0');
        let digits: String = format!("{whole}{fraction}").trim_start_matches('0').to_owned();
        let mut exp10 = suffix_exp10.checked_sub(fraction.len() as i32).ok_or_else(|| QuantityError::Range(text.to_owned()))?;
        let mut digits = digits.as_str();
        // Trailing zeros of the whole part become exponent, so "1000000000000000000000000000000000000000" fits.
        while digits.len() > 1 && digits.ends_with('0') {
            digits = &digits[..digits.len() - 1];
            exp10 = exp10.checked_add(1).ok_or_else(|| QuantityError::Range(text.to_owned()))?;
        }
        if digits.len() > MAX_DIGITS {
            return Err(QuantityError::Range(text.to_owned()));
        }
        let mantissa = if digits.is_empty() { 0 } else { digits.parse::<u128>().map_err(|_| format())? };
        Ok(Quantity { negative: negative && mantissa != 0, mantissa, exp10, exp2 })
    }

    /// The value in units of `10^scale` (scale -3: milli-units), rounded away from zero.
    pub fn scaled_value(&self, scale: i32) -> Option<i64> {
        let magnitude = scaled_magnitude(self.mantissa, self.exp2, i64::from(self.exp10) - i64::from(scale))?;
        let magnitude = i64::try_from(magnitude).ok()?;
        Some(if self.negative { -magnitude } else { magnitude })
    }

    /// Whole units (bytes for memory), rounded up as `Quantity.Value()`.
    pub fn value(&self) -> Option<i64> {
        self.scaled_value(0)
    }

    /// Thousandths of a unit (millicores for CPU), rounded up as `Quantity.MilliValue()`.
    pub fn milli_value(&self) -> Option<i64> {
        self.scaled_value(-3)
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }
}

/// `ceil(mantissa * 2^exp2 * 10^exp10)` without losing precision.
fn scaled_magnitude(mantissa: u128, exp2: u32, exp10: i64) -> Option<u128> {
    if mantissa == 0 {
        return Some(0);
    }
    let numerator = mantissa.checked_mul(1u128.checked_shl(exp2)?)?;
    if exp10 >= 0 {
        let factor = 10u128.checked_pow(u32::try_from(exp10).ok()?)?;
        numerator.checked_mul(factor)
    } else {
        match 10u128.checked_pow(u32::try_from(-exp10).ok()?) {
            Some(denominator) => Some(numerator.div_ceil(denominator)),
            // The divisor exceeds any numerator: a positive value smaller than one unit.
            None => Some(1),
        }
    }
}

/// The suffix's power of ten and power of two, `None` when it is not a suffix.
fn parse_suffix(suffix: &str) -> Option<(i32, u32)> {
    let known = match suffix {
        "" => Some((0, 0)),
        "Ki" => Some((0, 10)),
        "Mi" => Some((0, 20)),
        "Gi" => Some((0, 30)),
        "Ti" => Some((0, 40)),
        "Pi" => Some((0, 50)),
        "Ei" => Some((0, 60)),
        "n" => Some((-9, 0)),
        "u" => Some((-6, 0)),
        "m" => Some((-3, 0)),
        "k" => Some((3, 0)),
        "M" => Some((6, 0)),
        "G" => Some((9, 0)),
        "T" => Some((12, 0)),
        "P" => Some((15, 0)),
        "E" => Some((18, 0)),
        _ => None,
    };
    if known.is_some() {
        return known;
    }
    // A decimal exponent: "e3", "E-2", "e+6" ("E" alone is exa, handled above).
    let exponent = suffix.strip_prefix(['e', 'E'])?;
    let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((exponent.parse::<i32>().ok()?, 0))
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

/// Millicores of a CPU quantity, rounded up ("1.5" → 1500, "100m" → 100, "1u" → 1).
pub fn cpu_millis(quantity: &str) -> Result<i64, QuantityError> {
    Quantity::parse(quantity)?.milli_value().ok_or_else(|| QuantityError::Range(quantity.to_owned()))
}

/// Bytes of a memory or storage quantity, rounded up ("64Mi" → 67108864, "1G" → 10^9).
pub fn bytes(quantity: &str) -> Result<i64, QuantityError> {
    Quantity::parse(quantity)?.value().ok_or_else(|| QuantityError::Range(quantity.to_owned()))
}

/// CFS shares for a CPU request, as kubelet's `MilliCPUToShares`: 1024 per CPU, at least 2 (also
/// for no request, so a best-effort container still gets some CPU), at most 262144.
pub fn cpu_shares(millis: i64) -> i64 {
    if millis <= 0 {
        return MIN_SHARES;
    }
    (millis.saturating_mul(SHARES_PER_CPU) / MILLI_CPU_TO_CPU).clamp(MIN_SHARES, MAX_SHARES)
}

/// CFS quota (µs per `period` µs) for a CPU limit, as kubelet's `MilliCPUToQuota`: at least 1000
/// µs because the kernel refuses less; a zero limit means no quota (0).
pub fn cpu_quota(millis: i64, period: i64) -> i64 {
    if millis <= 0 {
        return 0;
    }
    (millis.saturating_mul(period) / MILLI_CPU_TO_CPU).max(MIN_QUOTA_PERIOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millicores() {
        for (text, millis) in [
            ("100m", 100),
            ("1", 1000),
            ("1.5", 1500),
            ("0.1", 100),
            (".5", 500),
            ("2.", 2000),
            ("+250m", 250),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("1e+2", 100_000),
            ("0", 0),
            ("0.0", 0),
            ("1k", 1_000_000),
            ("500000n", 1),
            // Rounding is up (away from zero), as MilliValue().
            ("1.5m", 2),
            ("0.0001", 1),
            ("1u", 1),
            ("1n", 1),
            ("-1.5m", -2),
        ] {
            assert_eq!(cpu_millis(text), Ok(millis), "{text}");
        }
    }

    #[test]
    fn memory_quantities_in_bytes() {
        for (text, value) in [
            ("64Mi", 64 << 20),
            ("1Ki", 1024),
            ("1.5Gi", 3 << 29),
            ("1G", 1_000_000_000),
            ("1M", 1_000_000),
            ("1k", 1000),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("1Ei", 1 << 60),
            ("0.5", 1),
            ("100m", 1),
            ("1000m", 1),
            ("1001m", 2),
            ("0.5Ki", 512),
        ] {
            assert_eq!(bytes(text), Ok(value), "{text}");
        }
    }

    #[test]
    fn malformed_and_out_of_range_quantities_are_errors() {
        for text in ["", "abc", "1.2.3", "Mi", "1 Mi", "--1", "1x"] {
            assert!(matches!(bytes(text), Err(QuantityError::Format(_))), "{text}: {:?}", bytes(text));
        }
        for text in ["1Q", "1Kb", "1e", "1ee3", "1e3.5", "1mi"] {
            assert!(bytes(text).is_err(), "{text}");
        }
        assert!(matches!(bytes("16Ei"), Err(QuantityError::Range(_))));
        assert!(matches!(cpu_millis("1e30"), Err(QuantityError::Range(_))));
        assert_eq!(bytes("8Ei").map_err(|_| ()), Err(()), "2^63 does not fit an i64");
        assert_eq!(bytes("7Ei"), Ok(7 << 60));
    }

    #[test]
    fn long_numbers_keep_their_value() {
        assert_eq!(bytes("1000000000000000000"), Ok(1_000_000_000_000_000_000));
        assert_eq!(bytes("0.000000000000000000000000000000000000000000001"), Ok(1));
        assert_eq!(cpu_millis("00001.00000"), Ok(1000));
    }

    #[test]
    fn cpu_shares_as_kubelet() {
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(2), 2);
        assert_eq!(cpu_shares(100), 102);
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(1500), 1536);
        assert_eq!(cpu_shares(1_000_000), 262_144);
        assert_eq!(cpu_shares(i64::MAX), 262_144);
    }

    #[test]
    fn cpu_quota_as_kubelet() {
        assert_eq!(cpu_quota(0, 100_000), 0);
        assert_eq!(cpu_quota(1, 100_000), 1000);
        assert_eq!(cpu_quota(10, 100_000), 1000);
        assert_eq!(cpu_quota(100, 100_000), 10_000);
        assert_eq!(cpu_quota(1500, 100_000), 150_000);
        assert_eq!(cpu_quota(250, 50_000), 12_500);
    }
}
