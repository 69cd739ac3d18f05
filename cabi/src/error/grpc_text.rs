//! Reading a gRPC status out of the text the control plane's client made
//! of it (its code's name, its message, and the subkind they map to).

use blazen_embedded_cp::Subkind;

/// The subkind of the gRPC code named `code` (see [`Subkind::for_code`]);
/// `ControlPlane` for a name that is no gRPC code.
pub(super) fn subkind_for_code(code: &str) -> Subkind {
    (0..=16)
        .map(tonic::Code::from_i32)
        .find(|c| format!("{c:?}") == code)
        .map_or(Subkind::ControlPlane, Subkind::for_code)
}

/// Reads the gRPC code's name out of an error text, whichever rendering
/// produced it: `code=Name)` (trait methods), `status: Name,` (older tonic
/// Display) or `code: 'description'` (tonic 0.14 Display).
pub(super) fn grpc_code_in(text: &str) -> Option<String> {
    if let Some(i) = text.find("code: '") {
        // Matched whole: a description may hold an apostrophe itself
        // (FailedPrecondition's "... the operation's execution").
        let rest = &text[i + 7..];
        return (0..=16)
            .map(tonic::Code::from_i32)
            .find(|c| {
                rest.strip_prefix(c.description())
                    .is_some_and(|after| after.starts_with('\''))
            })
            .map(|c| format!("{c:?}"));
    }
    let start = text
        .find("code=")
        .map(|i| i + 5)
        .or_else(|| text.find("status: ").map(|i| i + 8))?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let code = &rest[..end];
    code.chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase())
        .then(|| code.to_string())
}

/// The message of a tonic `Status` rendering (`code: '...', message:
/// "...", source: ...`), unescaped; `None` when the text has none.
pub(super) fn status_message(text: &str) -> Option<String> {
    let start = text.find("message: \"")? + "message: \"".len();
    let mut out = String::new();
    let mut chars = text[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_read_from_its_description() {
        for n in 0..=16 {
            let code = tonic::Code::from_i32(n);
            let text = format!(
                "tonic transport error: code: '{}', message: \"m\"",
                code.description()
            );
            assert_eq!(grpc_code_in(&text), Some(format!("{code:?}")), "{text}");
        }
    }
}
