//! "Did you mean" hints for misspelt names (setting keys, disk and vif parameters).

/// Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ` (did you mean 'X'?)` for the closest of `known` within two edits of `word`, else "".
pub(crate) fn did_you_mean(word: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean '{k}'?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_name_within_two_edits() {
        assert_eq!(edit_distance("memroy", "memory"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            did_you_mean("vdve", &["vdev", "format"]),
            " (did you mean 'vdev'?)"
        );
        assert_eq!(did_you_mean("frobnicate", &["vdev", "format"]), "");
    }
}
