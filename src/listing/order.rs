//! The order a listing is shown in, as its query asks: `?sort=name|size|date&order=asc|desc`.
//! A query is never an error: what is not one of those exact pairs is ignored, so a bad
//! value falls back to the default (names ascending). Directories always come first, and
//! ties go by name, so the order is total and the same on every run. May use: std.

use super::Entry;

/// The column a listing is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Key {
    #[default]
    Name,
    Size,
    Date,
}

impl Key {
    /// Every column, in the order the page shows them.
    pub const ALL: [Key; 3] = [Key::Name, Key::Size, Key::Date];

    fn word(self) -> &'static str {
        match self {
            Key::Name => "name",
            Key::Size => "size",
            Key::Date => "date",
        }
    }
}

/// A column and a direction; the default is names ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Order {
    pub key: Key,
    pub descending: bool,
}

impl Order {
    /// The order a raw (still percent-encoded) query asks for. Pairs are split on `&`; only
    /// `sort=name`, `sort=size`, `sort=date`, `order=asc` and `order=desc` count (the last
    /// of each kind wins), everything else — other parameters such as `format=json`,
    /// unknown values, other spellings — is ignored.
    pub fn from_query(query: Option<&str>) -> Order {
        let mut order = Order::default();
        for pair in query.unwrap_or_default().split('&') {
            match pair {
                "sort=name" => order.key = Key::Name,
                "sort=size" => order.key = Key::Size,
                "sort=date" => order.key = Key::Date,
                "order=asc" => order.descending = false,
                "order=desc" => order.descending = true,
                _ => {}
            }
        }
        order
    }

    /// The query that asks for this order (fixed ASCII: safe in a link as it is, once its
    /// `&` is written `&amp;` in HTML).
    pub fn query(self) -> String {
        let direction = if self.descending { "desc" } else { "asc" };
        format!("sort={}&order={direction}", self.key.word())
    }

    /// Where a column header's link leads: the other direction if the page is sorted by
    /// `key` already, else `key` ascending.
    pub fn toggled(self, key: Key) -> Order {
        Order {
            key,
            descending: self.key == key && !self.descending,
        }
    }

    /// Sorts `entries`: directories first, then by the key in the direction asked, then by
    /// name ascending (byte order, so the order is the same everywhere). Sizes compare as
    /// numbers (a directory's is 0), times by value with an unknown time oldest.
    pub fn sort(self, entries: &mut [Entry]) {
        entries.sort_by(|a, b| {
            let by_key = match self.key {
                Key::Name => a.name.cmp(&b.name),
                Key::Size => a.size.cmp(&b.size),
                Key::Date => a.modified.cmp(&b.modified),
            };
            let by_key = if self.descending {
                by_key.reverse()
            } else {
                by_key
            };
            b.is_dir
                .cmp(&a.is_dir)
                .then(by_key)
                .then_with(|| a.name.cmp(&b.name))
        });
    }

    /// The `aria-sort` value of `key`'s column header, and the arrow shown beside it.
    pub fn marker(self, key: Key) -> Option<(&'static str, &'static str)> {
        match (self.key == key, self.descending) {
            (false, _) => None,
            (true, false) => Some(("ascending", "\u{25b2}")),
            (true, true) => Some(("descending", "\u{25bc}")),
        }
    }
}
