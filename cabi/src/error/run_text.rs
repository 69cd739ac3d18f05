//! A failed run's error text as the library records it: the kind in
//! brackets, then the message (`[Timeout] ...`).

use crate::rt::ErrorKind;

impl ErrorKind {
    /// A failed run's error text as the library records it: the kind in
    /// brackets, then the message (`[Timeout] ...`).
    pub fn tag(self, message: &str) -> String {
        format!("[{}] {message}", self.text())
    }

    /// Splits a run's recorded error text into its kind and message; text
    /// without a known `[Kind] ` tag has no kind.
    pub fn untag(text: &str) -> (Option<Self>, &str) {
        let tagged = text.strip_prefix('[').and_then(|rest| {
            let (name, message) = rest.split_once("] ")?;
            Some((Self::from_text(name)?, message))
        });
        match tagged {
            Some((kind, message)) => (Some(kind), message),
            None => (None, text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_errors_carry_their_kind() {
        let text = ErrorKind::Timeout.tag("too slow");
        assert_eq!(text, "[Timeout] too slow");
        assert_eq!(
            ErrorKind::untag(&text),
            (Some(ErrorKind::Timeout), "too slow")
        );
        assert_eq!(ErrorKind::untag("[Nope] x"), (None, "[Nope] x"));
        assert_eq!(ErrorKind::untag("plain"), (None, "plain"));
    }

    #[test]
    fn the_embedded_control_planes_run_error_tags_are_error_kinds() {
        for k in blazen_embedded_cp::RunErrorKind::ALL {
            let text = k.tag("the message");
            let (kind, message) = ErrorKind::untag(&text);
            assert_eq!(kind.map(ErrorKind::text), Some(k.name()), "{text}");
            assert_eq!(message, "the message");
        }
    }
}
