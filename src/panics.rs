//! A panic's payload as text, for the log: the pool logs a job that panicked, the connection
//! logs a handler that did. Its own module so that neither imports the other for it.
//! May use: nothing but std.

/// The text of a panic's payload (`panic!` with a literal gives a `&str`, with arguments a
/// `String`; anything else has no text to show).
pub fn message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_as_text() {
        let text = |payload: Box<dyn std::any::Any + Send>| message(&*payload).to_string();
        assert_eq!(text(Box::new("literal")), "literal");
        assert_eq!(text(Box::new(format!("formatted {}", 1))), "formatted 1");
        assert_eq!(text(Box::new(7_u8)), "(no message)");
    }
}
