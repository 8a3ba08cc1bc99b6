//! Rows → one Arrow record batch with the fixed table schema.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, StructArray};
use arrow_schema::ArrowError;

use crate::fanout::CellRow;
use crate::schema::{self, COLUMNS, ColumnKind, TIMESTAMP_TZ};
use crate::stac::Value;

/// Builds the record batch of `rows`: every schema column, typed as the schema says.
pub fn record_batch(rows: &[CellRow]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> =
        COLUMNS.iter().enumerate().map(|(i, c)| column(rows, i, c.name, c.kind)).collect();
    RecordBatch::try_new(schema::arrow_schema(), columns)
}

fn column(rows: &[CellRow], i: usize, name: &str, kind: ColumnKind) -> ArrayRef {
    if name == schema::GRID_PARTITION {
        let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
        for r in rows {
            b.append_value(r.cell.as_ref());
        }
        return Arc::new(b.finish());
    }
    let values = rows.iter().map(|r| r.item.get(i));
    match kind {
        ColumnKind::String => {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 32);
            for v in values {
                match v {
                    Value::Text(s) => b.append_value(s),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnKind::Binary => {
            let mut b = BinaryBuilder::with_capacity(rows.len(), rows.len() * 300);
            for v in values {
                match v {
                    Value::Bytes(x) => b.append_value(x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnKind::Long => {
            let mut b = Int64Builder::with_capacity(rows.len());
            for v in values {
                b.append_option(match v {
                    Value::Long(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        ColumnKind::Double => {
            let mut b = Float64Builder::with_capacity(rows.len());
            for v in values {
                b.append_option(match v {
                    Value::Double(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        ColumnKind::TimestampTz => {
            let mut b =
                TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone(TIMESTAMP_TZ);
            for v in values {
                b.append_option(match v {
                    Value::Micros(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        ColumnKind::BboxStruct => bbox_column(rows, i),
    }
}

fn bbox_column(rows: &[CellRow], i: usize) -> ArrayRef {
    let mut parts: [Float64Builder; 4] =
        std::array::from_fn(|_| Float64Builder::with_capacity(rows.len()));
    let mut valid = Vec::with_capacity(rows.len());
    for r in rows {
        let b = match r.item.get(i) {
            Value::Bbox(b) => Some(*b),
            _ => None,
        };
        valid.push(b.is_some());
        for (k, part) in parts.iter_mut().enumerate() {
            part.append_option(b.map(|b| b[k]));
        }
    }
    let arrays: Vec<ArrayRef> =
        parts.iter_mut().map(|p| Arc::new(p.finish()) as ArrayRef).collect();
    Arc::new(StructArray::new(schema::bbox_fields(), arrays, Some(valid.into())))
}
