//! Colour for the result and warnings, on a terminal only: `NO_COLOR`, `CLICOLOR=0` and
//! `TERM=dumb` turn it off (through the `console` crate's detection).

/// What a piece of text means, which picks its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Success (green).
    Good,
    /// Needs attention (yellow).
    Warn,
    /// Failure (red).
    Bad,
}

/// Whether stdout gets colour.
pub fn stdout_colour() -> bool {
    console::colors_enabled()
}

/// Whether stderr gets colour.
pub fn stderr_colour() -> bool {
    console::colors_enabled_stderr()
}

/// `text` in the colour of `tone` (bold), or unchanged when `colour` is false.
pub fn paint(text: &str, tone: Tone, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    let s = console::Style::new().bold().force_styling(true);
    let s = match tone {
        Tone::Good => s.green(),
        Tone::Warn => s.yellow(),
        Tone::Bad => s.red(),
    };
    s.apply_to(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paints_only_when_asked() {
        assert_eq!(paint("ok", Tone::Good, false), "ok");
        let p = paint("ok", Tone::Bad, true);
        assert!(p.contains("\u{1b}[") && p.contains("ok"), "{p:?}");
        assert_ne!(p, paint("ok", Tone::Good, true));
    }
}
