//! Hive-style partition values in paths (`key=value` directories): escaped by the pipeline's
//! writer, decoded by every reader of its layout (the Delta log, the report). In the core
//! crate because both the ETL and the report read them, and the report cannot depend on the
//! ETL crate.

/// Escapes a partition value the way Hive and Spark do (`ExternalCatalogUtils.escapePathName`):
/// `%XX` for control characters and `"#%'*/:=?\{[]^`, so any value is one path segment that
/// both engines decode back to the original.
pub fn escape_path_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let needs = c.is_ascii_control()
            || matches!(
                c,
                '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
            );
        if needs {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        // Hive's name for an empty or null partition value.
        out.push_str("__HIVE_DEFAULT_PARTITION__");
    }
    out
}

/// Reverses [`escape_path_value`].
pub fn unescape_path_value(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
