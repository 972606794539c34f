//! Confirmation before the first change: restate what will happen (from → to, the
//! databases, the data-loss estimate in disaster mode), then ask. Disaster recovery takes
//! only the word `yes`; anything else but a clear "no" is explained and asked again.

use std::io::{BufRead, Write};

/// How many unclear answers are explained and asked again before the prompt gives up.
pub const MAX_ASKS: usize = 3;

/// What the operator answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Go ahead.
    Proceed,
    /// Do not (an explicit no, end of input, or too many unclear answers).
    Decline,
}

/// Asks until the answer is clear. `disaster` requires the word `yes`; otherwise `y` or
/// `yes`. Returns the answer and the exact text that counted.
pub fn ask(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    disaster: bool,
) -> std::io::Result<(Answer, Option<String>)> {
    for _ in 0..MAX_ASKS {
        if disaster {
            write!(
                out,
                "This forced failover may lose the changes estimated above. Type `yes` to proceed, `no` to stop: "
            )?;
        } else {
            write!(out, "Proceed with these changes? [y/N] ")?;
        }
        out.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(out)?;
            return Ok((Answer::Decline, None));
        }
        let a = line.trim();
        let lower = a.to_ascii_lowercase();
        match (disaster, lower.as_str()) {
            (true, "yes") if a == "yes" => return Ok((Answer::Proceed, Some(a.into()))),
            (false, "y" | "yes") => return Ok((Answer::Proceed, Some(a.into()))),
            (_, "n" | "no") | (false, "") => return Ok((Answer::Decline, Some(a.into()))),
            (true, _) => writeln!(
                out,
                "Only the word `yes` confirms a forced failover (you typed `{a}`); type `no` to stop."
            )?,
            (false, _) => writeln!(out, "Please answer `y` or `n` (you typed `{a}`).")?,
        }
    }
    writeln!(out, "No clear answer; stopping.")?;
    Ok((Answer::Decline, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str, disaster: bool) -> (Answer, Option<String>, String) {
        let mut out = Vec::new();
        let (a, t) = ask(&mut input.as_bytes(), &mut out, disaster).unwrap();
        (a, t, String::from_utf8(out).unwrap())
    }

    #[test]
    fn disaster_needs_the_word_yes_and_re_asks_with_the_reason() {
        let (a, t, _) = run("yes\n", true);
        assert_eq!((a, t.as_deref()), (Answer::Proceed, Some("yes")));
        let (a, t, out) = run("y\nyes\n", true);
        assert_eq!((a, t.as_deref()), (Answer::Proceed, Some("yes")));
        assert!(out.contains("Only the word `yes`"), "{out}");
        assert!(out.contains("you typed `y`"), "{out}");
        assert_eq!(out.matches("Type `yes`").count(), 2, "{out}");
        assert_eq!(run("no\n", true).0, Answer::Decline);
        assert_eq!(run("", true).0, Answer::Decline);
        assert_eq!(run("YES\nY\nok\nyes\n", true).0, Answer::Decline);
    }

    #[test]
    fn planned_takes_y_or_yes() {
        assert_eq!(run("y\n", false).0, Answer::Proceed);
        assert_eq!(run("YES\n", false).0, Answer::Proceed);
        assert_eq!(run("\n", false).0, Answer::Decline);
        assert_eq!(run("n\n", false).0, Answer::Decline);
        assert_eq!(run("", false).0, Answer::Decline);
        let (a, _, out) = run("maybe\ny\n", false);
        assert_eq!(a, Answer::Proceed);
        assert!(out.contains("Please answer"), "{out}");
    }
}
