//! Text received from registries, made safe to print, and errors told as one line.
//!
//! Registries are untrusted: a registry, a token server or a proxy in front of them may be
//! hostile, so their answers are bounded in size and time where they are read, and what they
//! say ends up in error messages, report lines and logs that a person reads on a terminal. A terminal obeys control characters: ESC
//! starts CSI/OSC sequences that clear the screen, retitle the window or rewrite earlier lines,
//! a CR or backspace overwrites what was printed, a newline forges a log line of its own. So
//! every such character is shown escaped (`\x1b`, `\u{9b}`) instead of being passed on: the
//! text stays readable for diagnosis, and nothing in it acts on the terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character escaped: C0 controls (ESC, BEL, CR, LF, backspace, …)
/// and DEL as `\xNN`, C1 controls (single-character CSI, OSC, …) and the bidirectional
/// overrides that reorder what a reader sees as `\u{NNNN}`. A tab becomes a space. Text
/// without any of these is returned as it is, without copying.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut clean = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\t' => clean.push(' '),
            c if c.is_ascii_control() => {
                let _ = write!(clean, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(clean, "\\u{{{:x}}}", c as u32);
            }
            c => clean.push(c),
        }
    }
    Cow::Owned(clean)
}

/// Control characters (C0, DEL, C1) and the Unicode bidirectional controls, which let text
/// display in another order than it is stored ("Trojan Source").
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// An error and its causes, `outer: inner: innermost`, so "error sending request" says why.
/// A cause whose text an outer level already quotes is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    error_chain_tidied(error, |message| message.to_string())
}

/// [`error_chain`] with each level's message passed through `tidy` first (to strip a library's
/// boilerplate); a level that `tidy` empties is left out.
pub fn error_chain_tidied(error: &dyn std::error::Error, tidy: impl Fn(&str) -> String) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let part = tidy(&current.to_string());
        // A wrapper often repeats its cause's text; keep each piece once.
        if !part.is_empty() && !parts.iter().any(|seen| seen.contains(&part)) {
            parts.push(part);
        }
        next = current.source();
    }
    if parts.is_empty() { error.to_string() } else { parts.join(": ") }
}

#[cfg(test)]
mod tests {
    use super::{error_chain, error_chain_tidied, sanitize};

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn an_error_chain_names_every_cause_once() {
        let error = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "connect failed: connection refused",
                Some(Box::new(Layer("connection refused", None))),
            ))),
        );
        assert_eq!(error_chain(&error), "error sending request: connect failed: connection refused");
        let generic = Layer("generic wrapper", Some(Box::new(Layer("the cause", None))));
        let tidied = error_chain_tidied(&generic, |m| if m.starts_with("generic") { String::new() } else { m.into() });
        assert_eq!(tidied, "the cause");
    }

    /// Whether `text` holds anything a terminal would act on.
    fn has_control(text: &str) -> bool {
        text.chars().any(|c| c.is_control())
    }

    #[test]
    fn plain_text_is_returned_without_a_copy() {
        let text = "MANIFEST_UNKNOWN: manifest unknown (ünïcode is fine)";
        assert!(matches!(sanitize(text), std::borrow::Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn escape_sequences_lose_their_escape_and_stay_readable() {
        for (hostile, shown) in [
            ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
            ("\x1b[2J\x1b[1;31mred", "\\x1b[2J\\x1b[1;31mred"),
            ("ok\rFAKE", "ok\\x0dFAKE"),
            ("line\nINFO forged", "line\\x0aINFO forged"),
            ("abc\x08\x08\x08xyz", "abc\\x08\\x08\\x08xyz"),
            ("del\x7f", "del\\x7f"),
            ("\u{9b}31m c1 csi", "\\u{9b}31m c1 csi"),
            ("\u{9d}0;title\u{9c}", "\\u{9d}0;title\\u{9c}"),
            ("a\tb", "a b"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
        ] {
            let clean = sanitize(hostile);
            assert_eq!(clean, shown, "{hostile:?}");
            assert!(!has_control(&clean), "{clean:?}");
        }
    }

    #[test]
    fn every_control_character_is_escaped() {
        let all: String = (0u32..0x2070).filter_map(char::from_u32).collect();
        let clean = sanitize(&all);
        assert!(!has_control(&clean));
        assert!(!clean.contains('\u{202e}') && !clean.contains('\u{2066}'));
    }
}
