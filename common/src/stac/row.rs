//! One table row's values, indexed like [`crate::schema::COLUMNS`].

use crate::schema::{COLUMNS, ColumnKind, column_index};

/// A single column value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value (the column is null).
    Null,
    /// UTF-8 text.
    Text(String),
    /// 64-bit integer.
    Long(i64),
    /// 64-bit float.
    Double(f64),
    /// Microseconds since the epoch, UTC.
    Micros(i64),
    /// Raw bytes (WKB).
    Bytes(Vec<u8>),
    /// `[xmin, ymin, xmax, ymax]`.
    Bbox([f64; 4]),
}

impl Value {
    /// Whether this value may be stored in a column of `kind`.
    pub fn fits(&self, kind: ColumnKind) -> bool {
        matches!(
            (self, kind),
            (Value::Null, _)
                | (Value::Text(_), ColumnKind::String)
                | (Value::Long(_), ColumnKind::Long)
                | (Value::Double(_), ColumnKind::Double)
                | (Value::Micros(_), ColumnKind::TimestampTz)
                | (Value::Bytes(_), ColumnKind::Binary)
                | (Value::Bbox(_), ColumnKind::BboxStruct)
        )
    }
}

/// The values of one item, one per schema column (`grid_partition` is set per cell at fan-out).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    values: Vec<Value>,
    /// When the item's object was last modified (microseconds), if it was read from a store:
    /// the version of an item without `updated`. Not a column.
    object_modified: Option<i64>,
}

/// Column positions used on hot paths, checked against the schema by a test.
pub(crate) mod idx {
    pub const ID: usize = 0;
    pub const COLLECTION: usize = 24;
    #[cfg(test)]
    pub const GRID_PARTITION: usize = 1;
    pub const GEOMETRY: usize = 2;
    pub const DATETIME: usize = 3;
    pub const PLATFORM: usize = 4;
    pub const UPDATED: usize = 21;
    pub const GEOMETRY_BBOX: usize = 30;
}

impl ItemRow {
    /// A row with every column null.
    pub fn empty() -> Self {
        ItemRow { values: vec![Value::Null; COLUMNS.len()], object_modified: None }
    }

    /// Sets the column at `index` (panics on an index outside the schema: a programming error).
    pub fn set(&mut self, index: usize, value: Value) {
        self.values[index] = value;
    }

    /// Sets a column by name; returns false when there is no such column.
    pub fn set_by_name(&mut self, name: &str, value: Value) -> bool {
        match column_index(name) {
            Some(i) => {
                self.values[i] = value;
                true
            }
            None => false,
        }
    }

    /// The value of the column at `index`.
    pub fn get(&self, index: usize) -> &Value {
        &self.values[index]
    }

    /// The value of a column by name.
    pub fn get_by_name(&self, name: &str) -> Option<&Value> {
        column_index(name).map(|i| &self.values[i])
    }

    /// All values, in schema order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The item id.
    pub fn id(&self) -> &str {
        self.text(idx::ID).unwrap_or("")
    }

    /// The item's identity: (collection, id).
    pub fn key(&self) -> crate::ids::ItemKey<'_> {
        crate::ids::ItemKey { collection: self.text(idx::COLLECTION), id: self.id() }
    }

    /// The item's `datetime` in microseconds, if it has one.
    pub fn datetime_micros(&self) -> Option<i64> {
        match self.values[idx::DATETIME] {
            Value::Micros(us) => Some(us),
            _ => None,
        }
    }

    /// The item's `updated` in microseconds, if it has one.
    pub fn updated_micros(&self) -> Option<i64> {
        match self.values[idx::UPDATED] {
            Value::Micros(us) => Some(us),
            _ => None,
        }
    }

    /// Records when the item's object was last modified (microseconds since the epoch).
    pub fn set_object_modified(&mut self, micros: i64) {
        self.object_modified = Some(micros);
    }

    /// When the item's object was last modified (microseconds since the epoch), if known.
    pub fn object_modified(&self) -> Option<i64> {
        self.object_modified
    }

    /// The item's version, which decides whether a copy replaces the table's: its `updated`,
    /// else when its object was last modified (an archive that re-processes items without
    /// `updated` still writes their objects again), else none (older than any version).
    pub fn version_micros(&self) -> Option<i64> {
        self.updated_micros().or(self.object_modified)
    }

    /// The item's platform, if any.
    pub fn platform(&self) -> Option<&str> {
        self.text(idx::PLATFORM)
    }

    /// The WKB geometry.
    pub fn wkb(&self) -> &[u8] {
        match &self.values[idx::GEOMETRY] {
            Value::Bytes(b) => b,
            _ => &[],
        }
    }

    /// The geometry's `[xmin, ymin, xmax, ymax]`.
    pub fn geometry_bbox(&self) -> Option<[f64; 4]> {
        match self.values[idx::GEOMETRY_BBOX] {
            Value::Bbox(b) => Some(b),
            _ => None,
        }
    }

    fn text(&self, i: usize) -> Option<&str> {
        match &self.values[i] {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    #[test]
    fn hot_path_indices_match_the_schema() {
        assert_eq!(column_index("id"), Some(idx::ID));
        assert_eq!(column_index("collection"), Some(idx::COLLECTION));
        assert_eq!(column_index(schema::GRID_PARTITION), Some(idx::GRID_PARTITION));
        assert_eq!(column_index(schema::GEOMETRY), Some(idx::GEOMETRY));
        assert_eq!(column_index(schema::DATETIME), Some(idx::DATETIME));
        assert_eq!(column_index("platform"), Some(idx::PLATFORM));
        assert_eq!(column_index("updated"), Some(idx::UPDATED));
        assert_eq!(column_index(schema::GEOMETRY_BBOX), Some(idx::GEOMETRY_BBOX));
    }
}
