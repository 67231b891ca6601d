//! How spans are sampled ([`Sampling`]), and how a sampler is spelled: one spelling on the
//! command line and in scenario files (`off`, `always_off`, `always_on`; the ratio as
//! `ratio:0.1` on a command line, `{ratio: 0.1}` in YAML).

/// How spans are sampled. Every SDK-backed choice is parent-based: a remote parent's sampled
/// flag decides, so one decision at the edge holds across every hop.
///
/// In a scenario file it reads `off`, `always_off`, `{ratio: 0.1}` or `always_on`; on a command
/// line the same names, with `ratio:0.1` for the ratio (see its [`FromStr`](std::str::FromStr)).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// No SDK at all: no OpenTelemetry layer, no provider. The baseline of the overhead ladder.
    Off,
    /// The SDK is installed but samples nothing new (it still honours sampled parents).
    AlwaysOff,
    /// Sample this share (0.0–1.0) of new traces by trace id.
    Ratio(f64),
    /// Sample every new trace.
    #[default]
    AlwaysOn,
}

/// A sampler that is not one of `off`, `always_off`, `always_on` or `ratio:R` with R in 0–1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown sampler {0:?}; expected off, always_off, always_on or ratio:R (R from 0 to 1)")]
pub struct UnknownSampling(String);

impl Sampling {
    /// Whether `s` is a spelling this version still reads but no longer writes: `always-on`
    /// and `always-off`, the command line's names before they were made the YAML's.
    pub fn is_old_spelling(s: &str) -> bool {
        matches!(s, "always-on" | "always-off")
    }
}

impl std::str::FromStr for Sampling {
    type Err = UnknownSampling;

    /// Parses a command line's sampler: `off`, `always_off`, `always_on`, `ratio:R`; the old
    /// `always-off` and `always-on` too (see [`Sampling::is_old_spelling`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownSampling(s.to_owned());
        match s {
            "off" => Ok(Self::Off),
            "always_off" | "always-off" => Ok(Self::AlwaysOff),
            "always_on" | "always-on" => Ok(Self::AlwaysOn),
            _ => {
                let ratio: f64 = s
                    .strip_prefix("ratio:")
                    .and_then(|r| r.trim().parse().ok())
                    .ok_or_else(unknown)?;
                if (0.0..=1.0).contains(&ratio) {
                    Ok(Self::Ratio(ratio))
                } else {
                    Err(unknown())
                }
            }
        }
    }
}

impl std::fmt::Display for Sampling {
    /// The command line's spelling, which [`FromStr`](std::str::FromStr) reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::AlwaysOff => f.write_str("always_off"),
            Self::AlwaysOn => f.write_str("always_on"),
            Self::Ratio(r) => write!(f, "ratio:{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_reads_the_yaml_names_and_a_ratio() {
        for (text, sampling) in [
            ("off", Sampling::Off),
            ("always_off", Sampling::AlwaysOff),
            ("always_on", Sampling::AlwaysOn),
            ("ratio:0.1", Sampling::Ratio(0.1)),
            ("ratio:1", Sampling::Ratio(1.0)),
        ] {
            assert_eq!(text.parse::<Sampling>(), Ok(sampling), "{text}");
            assert_eq!(
                sampling.to_string().parse::<Sampling>(),
                Ok(sampling),
                "round trip"
            );
            assert!(!Sampling::is_old_spelling(text));
        }
    }

    #[test]
    fn the_old_spelling_still_reads_and_is_known_as_old() {
        assert_eq!("always-on".parse::<Sampling>(), Ok(Sampling::AlwaysOn));
        assert_eq!("always-off".parse::<Sampling>(), Ok(Sampling::AlwaysOff));
        assert!(Sampling::is_old_spelling("always-on"));
    }

    #[test]
    fn anything_else_is_refused_by_name() {
        for bad in [
            "sometimes",
            "ratio:1.5",
            "ratio:-0.1",
            "ratio:",
            "ratio:x",
            "ALWAYS_ON",
        ] {
            let e = bad.parse::<Sampling>().expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
