//! The maintenance commands: `compact`, `expire-snapshots`, `remove-orphans`. Each changes the
//! table under the catalog lock through the publish sequence (a stored catalog is downloaded
//! first and uploaded after); a `--dry-run` reads the table as `info` does
//! (`crate::read_table`) and takes no lock.

pub mod compact;
mod compact_leased;
pub mod expire;
pub mod orphans;

use std::sync::Arc;

use anyhow::{Context, bail};
use earthcatalog_common::publish::{CatalogWriter, IndexUpdate};
use earthcatalog_common::stores::Stores;

use crate::cli::{CatalogArgs, LockArgs};
use crate::config::{LockPolicy, catalog_place};

/// Takes the lock as `owner` and opens the catalog for changes.
pub async fn open_locked(
    args: &CatalogArgs,
    lock: &LockArgs,
    stores: &Stores,
    owner: &str,
) -> anyhow::Result<CatalogWriter> {
    let place = catalog_place(args, None, None)?;
    let lock = LockPolicy::from_args(lock);
    if !lock.enabled && place.remote.is_some() {
        bail!(
            "--no-lock cannot be used with --catalog-store: the catalog is only uploaded under the lock"
        );
    }
    if place.remote.is_none() && !place.path.is_file() {
        bail!("no catalog at {}", place.path.display());
    }
    let stores = Arc::new(stores.clone());
    let guard = lock.acquire(&stores, &place.lock, owner.into()).await?;
    Ok(CatalogWriter::open(stores, place, guard).await?)
}

/// Runs `step` with the writer, then publishes (with the hash index the step changed, if any)
/// and releases; on failure the run's files go and the lock is released.
pub async fn under_lock<T, F>(mut writer: CatalogWriter, step: F) -> anyhow::Result<T>
where
    F: AsyncFnOnce(&mut CatalogWriter) -> anyhow::Result<(T, Option<IndexUpdate>)>,
{
    let outcome = step(&mut writer).await;
    let published = match &outcome {
        Ok((_, index)) => writer.publish(index.as_ref()).await.map(|_| ()),
        Err(_) => Ok(()),
    };
    let outcome = outcome.map(|(value, _)| value);
    match (outcome, published) {
        (Ok(v), Ok(())) => {
            writer.finish().await;
            Ok(v)
        }
        (Ok(_), Err(e)) => {
            writer.abandon().await;
            Err(e.into())
        }
        (Err(e), _) => {
            writer.abandon().await;
            Err(e)
        }
    }
}

/// Parses a duration like `5d`, `36h`, `90m`, `30s` (a bare number is days).
pub fn parse_age(s: &str) -> anyhow::Result<chrono::Duration> {
    let s = s.trim();
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "d"),
    };
    let n: i64 =
        number.parse().with_context(|| format!("'{s}' is not an age like 5d, 36h, 90m or 30s"))?;
    Ok(match unit {
        "d" => chrono::Duration::days(n),
        "h" => chrono::Duration::hours(n),
        "m" => chrono::Duration::minutes(n),
        "s" => chrono::Duration::seconds(n),
        _ => bail!("'{s}' is not an age like 5d, 36h, 90m or 30s"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_days_hours_minutes_seconds_and_bare_days() {
        assert_eq!(parse_age("5d").ok(), Some(chrono::Duration::days(5)));
        assert_eq!(parse_age("3").ok(), Some(chrono::Duration::days(3)));
        assert_eq!(parse_age("36h").ok(), Some(chrono::Duration::hours(36)));
        assert_eq!(parse_age("0s").ok(), Some(chrono::Duration::zero()));
        assert!(parse_age("5 weeks").unwrap_err().to_string().contains("5 weeks"));
    }
}
