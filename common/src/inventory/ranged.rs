//! Reading a large object as a sequence of short range requests.
//!
//! One GET streamed over the minutes it takes to ingest a big inventory outlives the client's
//! request timeout (object_store's default is 30 s for the whole request, body included), and a
//! dropped connection would end the stream. Short range requests each finish quickly, are
//! retried by the client on their own, and keep memory at one range.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use std::sync::Arc;

/// Bytes per range request: big enough that request overhead is small, small enough to fetch
/// well within a request timeout even on a slow link.
pub const RANGE_BYTES: u64 = 8 * 1024 * 1024;

/// The object's bytes, fetched range by range.
pub async fn ranged_bytes(
    store: Arc<dyn ObjectStore>,
    path: Path,
) -> object_store::Result<BoxStream<'static, object_store::Result<Bytes>>> {
    let size = store.head(&path).await?.size;
    let stream = futures::stream::iter((0..size).step_by(RANGE_BYTES as usize))
        .then(move |start| {
            let store = store.clone();
            let path = path.clone();
            async move { store.get_range(&path, start..(start + RANGE_BYTES).min(size)).await }
        })
        .into_stream();
    Ok(stream.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn ranges_concatenate_to_the_whole_object() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("big.csv");
        let data: Vec<u8> = (0..(RANGE_BYTES * 2 + 123)).map(|i| (i % 251) as u8).collect();
        store.put(&path, data.clone().into()).await.unwrap();
        let got: Vec<Bytes> = ranged_bytes(store, path).await.unwrap().try_collect().await.unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got.concat(), data);
    }
}
