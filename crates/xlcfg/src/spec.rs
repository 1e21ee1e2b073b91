//! Pieces shared by the device spec parsers (`disk`, `vif`).

/// A number in `min..=max` for parameter `name`.
pub(crate) fn small_number(name: &str, value: &str, min: u8, max: u8) -> Result<u8, String> {
    match value.parse::<u8>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(n) => Err(format!("'{name}': {n} is out of range ({min} to {max})")),
        Err(_) => Err(format!(
            "'{name}': '{value}' is not a number ({min} to {max})"
        )),
    }
}

/// `backend=`: Oxen's backends run in the host, so only Domain-0 (or empty, the default) works.
pub(crate) fn check_backend(value: &str) -> Result<(), String> {
    if matches!(value, "" | "0" | "Domain-0") {
        Ok(())
    } else {
        Err(format!(
            "backend '{value}': driver domains are not supported by Oxen (Domain-0 only)"
        ))
    }
}

/// Stores a string parameter that may be given only once.
pub(crate) fn set_once(slot: &mut Option<String>, name: &str, value: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("'{name}' is given twice"));
    }
    *slot = Some(value.to_string());
    Ok(())
}

/// Whether `key` looks like a parameter name (lower-case letter, then letters, digits, `-`, `_`).
pub(crate) fn is_param_name(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(small_number("queues", "4", 1, 16), Ok(4));
        assert_eq!(
            small_number("queues", "17", 1, 16).unwrap_err(),
            "'queues': 17 is out of range (1 to 16)"
        );
        assert_eq!(
            small_number("queues", "x", 1, 16).unwrap_err(),
            "'queues': 'x' is not a number (1 to 16)"
        );
        assert!(small_number("queues", "300", 1, 16).is_err());
        assert!(check_backend("Domain-0").is_ok() && check_backend("0").is_ok());
        assert!(check_backend("dd")
            .unwrap_err()
            .contains("driver domains are not supported"));
        let mut slot = None;
        set_once(&mut slot, "vdev", "xvda").unwrap();
        assert_eq!(
            set_once(&mut slot, "vdev", "xvdb").unwrap_err(),
            "'vdev' is given twice"
        );
        assert!(is_param_name("ring-page-order") && !is_param_name("/a") && !is_param_name("A"));
    }
}
