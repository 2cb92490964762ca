//! How people may write a name from airq's registries (an index, a
//! format, a band): ASCII letters in any case, with blanks, `-` and `_`
//! anywhere (`US_EPA`, `us-epa`, ` Us Epa `, `VERY_HIGH`), and a value of
//! blanks alone meaning "not given".
//!
//! One rule, here, for the parsers ([`Index::parse`](crate::Index::parse),
//! [`Format::parse`](crate::Format::parse),
//! [`Index::parse_band`](crate::Index::parse_band), the query's fields) and
//! for the API description, which states it as a regular expression
//! ([`pattern`]) so that a schema-driven client or fuzzer knows exactly
//! what is taken. The blanks are the six ASCII ones, written the same in
//! every regular-expression dialect (`[\t\n\x0B\f\r ]`), not `\s`, which
//! means a different set in ECMA-262, Python and Rust.

/// The characters that count as blanks in a name.
pub const BLANKS: [char; 6] = [' ', '\t', '\n', '\u{0B}', '\u{0C}', '\r'];

/// The same set as a regular-expression class body.
const BLANK_CLASS: &str = r"\t\n\x0B\f\r ";

pub fn is_blank(c: char) -> bool {
    BLANKS.contains(&c)
}

/// Whether `text` is blanks alone (or empty): the field is not given.
pub fn is_blank_text(text: &str) -> bool {
    text.chars().all(is_blank)
}

/// `text` without blanks, `-` and `_`, in ASCII lower case: two writings of
/// one name normalize alike.
pub fn normalize(text: &str) -> String {
    text.chars()
        .filter(|c| !is_blank(*c) && *c != '-' && *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether `written` is a writing of `name`.
pub fn matches(written: &str, name: &str) -> bool {
    let written = normalize(written);
    !written.is_empty() && written == normalize(name)
}

/// A regular expression (ECMA-262, Python and Rust alike) that matches
/// exactly the writings of `names` ([`matches`]) and blank text: a field
/// that takes one of `names` or nothing.
pub fn pattern<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    format!("^(?:[{BLANK_CLASS}]*|{})$", writings(names))
}

/// A regular expression that matches exactly the writings of `names`,
/// blank text not included.
pub fn name_pattern<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    format!("^{}$", writings(names))
}

/// `gap (name₁ | name₂ | …) gap`, each name's letters in either case with
/// gaps between them.
fn writings<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let gap = format!("[{BLANK_CLASS}_-]*");
    let writings: Vec<String> = names
        .into_iter()
        .map(|name| {
            normalize(name)
                .chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                    } else if c.is_ascii_punctuation() {
                        format!("\\{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(&gap)
        })
        .collect();
    format!("{gap}(?:{}){gap}", writings.join("|"))
}

/// The pattern of blank text alone.
pub fn blank_pattern() -> String {
    format!("^[{BLANK_CLASS}]*$")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writings_of_a_name() {
        for w in ["us-epa", "US_EPA", " Us Epa ", "u-s-e-p-a", "\tusepa\u{0B}"] {
            assert!(matches(w, "us-epa"), "{w:?}");
        }
        for w in ["usepa2", "us epa!", "ùsepa", "us\u{A0}epa", "", "_-"] {
            assert!(!matches(w, "us-epa"), "{w:?}");
        }
        assert!(is_blank_text(" \t\u{0B}\u{0C}\r\n"));
        assert!(!is_blank_text("\u{A0}"), "a no-break space is not a blank");
        assert!(!is_blank_text("_"));
    }

    #[test]
    fn the_pattern_is_what_it_says() {
        assert_eq!(
            pattern(["us-epa", "eaqi"]),
            r"^(?:[\t\n\x0B\f\r ]*|[\t\n\x0B\f\r _-]*(?:[uU][\t\n\x0B\f\r _-]*[sS][\t\n\x0B\f\r _-]*[eE][\t\n\x0B\f\r _-]*[pP][\t\n\x0B\f\r _-]*[aA]|[eE][\t\n\x0B\f\r _-]*[aA][\t\n\x0B\f\r _-]*[qQ][\t\n\x0B\f\r _-]*[iI])[\t\n\x0B\f\r _-]*)$"
        );
    }

    proptest! {
        #[test]
        /// The pattern, run by a regex engine, takes exactly what the
        /// parser takes, on text made of a name's letters, every kind of
        /// separator, and characters that look blank or alike but are not.
        fn parsing_and_the_pattern_agree(
            text in "[uUsSeEpPaAqQiI \\t\\n\\r\x0B\x0C_\\-\u{A0}\u{85}\u{FEFF}\u{212A}é1]{0,10}"
        ) {
            let names = ["us-epa", "eaqi"];
            let re = regex::Regex::new(&pattern(names)).unwrap();
            let named = names.iter().any(|n| matches(&text, n));
            prop_assert_eq!(is_blank_text(&text) || named, re.is_match(&text), "{:?}", text);
            let re = regex::Regex::new(&name_pattern(names)).unwrap();
            prop_assert_eq!(named, re.is_match(&text), "{:?}", text);
            let re = regex::Regex::new(&blank_pattern()).unwrap();
            prop_assert_eq!(is_blank_text(&text), re.is_match(&text), "{:?}", text);
        }
    }
}
