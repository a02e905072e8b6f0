//! The helpers this crate registers: `json`, `rfc3339` and the private `__nest`.

use std::time::{Duration, UNIX_EPOCH};

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, Output, PathAndJson,
    RenderContext, RenderError, RenderErrorReason, ScopedJson,
};
use serde_json::Value;

use super::escape::escape_json_string;

/// Name of the private helper the compiler inserts; templates may not call it themselves.
pub(super) const NEST: &str = "__nest";

/// Last second `rfc3339` can print (9999-12-31T23:59:59Z), as humantime's formatter allows.
const MAX_EPOCH_SECONDS: u64 = 253_402_300_799;

/// Registers `json`, `rfc3339` and `__nest` on `registry`.
pub(super) fn register(registry: &mut Handlebars<'static>) {
    registry.register_helper("json", Box::new(JsonHelper));
    registry.register_helper("rfc3339", Box::new(Rfc3339Helper));
    registry.register_helper(NEST, Box::new(NestHelper));
}

/// Builds the strict-mode "missing" error for a parameter, naming its path when it has one.
fn missing(param: &PathAndJson<'_>) -> RenderError {
    RenderError::strict_error(param.relative_path())
}

/// The parameter at `idx`, or handlebars' "param required" error.
fn required<'a, 'rc>(
    h: &'a Helper<'rc>,
    helper: &'static str,
    idx: usize,
) -> Result<&'a PathAndJson<'rc>, RenderError> {
    h.param(idx)
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex(helper, idx).into())
}

/// A string result, as a helper value.
fn derived(text: String) -> ScopedJson<'static> {
    ScopedJson::Derived(Value::String(text))
}

/// `{{json value}}`: the value as compact JSON, written raw (no escaping).
///
/// A missing value renders `null` (an error in strict mode). Called as a subexpression (which
/// is how the compiler wraps it inside a JSON string) it yields the JSON text as a string
/// value, which is then escaped like any other value.
struct JsonHelper;

impl JsonHelper {
    fn text(h: &Helper<'_>, r: &Handlebars<'_>) -> Result<String, RenderError> {
        let param = required(h, "json", 0)?;
        if param.is_value_missing() {
            return if r.strict_mode() {
                Err(missing(param))
            } else {
                Ok("null".to_owned())
            };
        }
        serde_json::to_string(param.value()).map_err(|e| RenderErrorReason::from(e).into())
    }
}

impl HelperDef for JsonHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        Ok(derived(Self::text(h, r)?))
    }

    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        out.write(&Self::text(h, r)?)?;
        Ok(())
    }
}

/// `{{rfc3339 seconds}}`: epoch seconds (a number or a numeric string) as RFC 3339 UTC with
/// microseconds, e.g. `2025-11-25T10:00:00.123456Z`.
///
/// Digits past the microsecond are truncated. Null renders empty. A value that is not epoch
/// seconds between 0 and 253402300799 (year 9999) is a render error in strict mode and renders
/// empty otherwise; so does a missing value.
struct Rfc3339Helper;

impl HelperDef for Rfc3339Helper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let param = required(h, "rfc3339", 0)?;
        if param.is_value_missing() {
            return if r.strict_mode() {
                Err(missing(param))
            } else {
                Ok(derived(String::new()))
            };
        }
        let text = match param.value() {
            Value::Null => return Ok(derived(String::new())),
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match parse_epoch_seconds(&text) {
            Some((secs, nanos)) => {
                let time = UNIX_EPOCH + Duration::new(secs, nanos);
                Ok(derived(humantime::format_rfc3339_micros(time).to_string()))
            }
            None if r.strict_mode() => {
                let path = param.relative_path().map_or("value", String::as_str);
                // The value is event data: keep the message short.
                let shown: String = text.chars().take(40).collect();
                let more = if shown.len() < text.len() { "…" } else { "" };
                Err(RenderErrorReason::Other(format!(
                    "rfc3339: `{path}` is {shown}{more}, not epoch seconds between 0 and {MAX_EPOCH_SECONDS}"
                ))
                .into())
            }
            None => Ok(derived(String::new())),
        }
    }
}

/// Parses decimal epoch seconds exactly (no floating point): `1764064800.123456`, `3600`,
/// `1.7640648e9`. Returns whole seconds and nanoseconds (digits past the ninth are dropped),
/// or `None` when the text is not a number, is negative, or is past year 9999.
pub(super) fn parse_epoch_seconds(text: &str) -> Option<(u64, u32)> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], unsigned[i + 1..].parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some((0, 0));
    }
    if negative {
        return None;
    }
    // Position of the decimal point within `significant`.
    let point = i64::try_from(int.len()).ok()? + i64::from(exponent)
        - i64::try_from(digits.len() - significant.len()).ok()?;
    if point > 12 {
        return None;
    }
    let (secs, frac_digits) = if point <= 0 {
        let zeros = usize::try_from(-point).ok()?.min(9);
        (0, format!("{}{significant}", "0".repeat(zeros)))
    } else {
        let point = usize::try_from(point).ok()?;
        if point >= significant.len() {
            let whole = format!("{significant}{}", "0".repeat(point - significant.len()));
            (whole.parse::<u64>().ok()?, String::new())
        } else {
            (
                significant[..point].parse::<u64>().ok()?,
                significant[point..].to_owned(),
            )
        }
    };
    if secs > MAX_EPOCH_SECONDS {
        return None;
    }
    let mut nanos = 0u32;
    for i in 0..9 {
        let digit = frac_digits
            .as_bytes()
            .get(i)
            .map_or(0, |b| u32::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    Some((secs, nanos))
}

/// `{{__nest n value}}`: `value` rendered as a plain `{{ }}` would render it, then escaped for
/// a JSON string `n` times. The registry's escape function adds the last escape, so a value at
/// JSON string depth `d` is written as `{{__nest d-1 value}}`.
///
/// A missing value renders empty, or is a strict-mode error naming its path, exactly like a
/// plain `{{ path }}`.
struct NestHelper;

impl HelperDef for NestHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let times = required(h, NEST, 0)?
            .value()
            .as_u64()
            .ok_or(RenderErrorReason::InvalidParamType("number"))?;
        let param = required(h, NEST, 1)?;
        if param.is_value_missing() {
            return if r.strict_mode() {
                Err(missing(param))
            } else {
                Ok(derived(String::new()))
            };
        }
        let mut text = param.value().render();
        for _ in 0..times {
            text = escape_json_string(&text);
        }
        Ok(derived(text))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_epoch_seconds;

    #[test]
    fn epoch_seconds_are_parsed_exactly() {
        assert_eq!(
            parse_epoch_seconds("1764064800.123456"),
            Some((1_764_064_800, 123_456_000))
        );
        assert_eq!(parse_epoch_seconds("3600"), Some((3600, 0)));
        assert_eq!(parse_epoch_seconds("0"), Some((0, 0)));
        assert_eq!(parse_epoch_seconds("-0.0"), Some((0, 0)));
        assert_eq!(parse_epoch_seconds("0.5"), Some((0, 500_000_000)));
        assert_eq!(parse_epoch_seconds(".25"), Some((0, 250_000_000)));
        assert_eq!(parse_epoch_seconds("7."), Some((7, 0)));
        assert_eq!(parse_epoch_seconds("007.1"), Some((7, 100_000_000)));
        assert_eq!(
            parse_epoch_seconds("1.7640648001234567891e9"),
            Some((1_764_064_800, 123_456_789))
        );
        assert_eq!(parse_epoch_seconds("1e+3"), Some((1000, 0)));
        assert_eq!(parse_epoch_seconds("15e-1"), Some((1, 500_000_000)));
        assert_eq!(parse_epoch_seconds("1e-12"), Some((0, 0)));
        assert_eq!(parse_epoch_seconds("1e-999999"), Some((0, 0)));
        assert_eq!(
            parse_epoch_seconds("253402300799.999999"),
            Some((253_402_300_799, 999_999_000))
        );
        for bad in [
            "",
            "-",
            ".",
            "-1",
            "-0.5",
            "1e",
            "abc",
            "1.2.3",
            " 1",
            "1 ",
            "+1",
            "0x10",
            "1e13",
            "253402300800",
            "1e99999999999",
            "NaN",
            "inf",
            "true",
        ] {
            assert_eq!(parse_epoch_seconds(bad), None, "{bad:?}");
        }
    }
}
