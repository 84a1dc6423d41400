//! The etcd v3 backend: every operation maps onto one etcd request or transaction, so several
//! API servers can share one etcd cluster.

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, CompactionOptions, DeleteOptions, EventType, GetOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use futures::StreamExt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Revision, StoreError, WatchStream, FORMAT_VERSION, FORMAT_VERSION_KEY};

/// A store on an etcd v3 cluster.
pub struct EtcdStore {
    client: Client,
    /// The newest compaction this process knows of; refreshed from etcd on connect and whenever
    /// etcd reports one.
    compacted: Arc<AtomicI64>,
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://host:port`), checks or records the data format version,
    /// and learns the compacted revision.
    pub async fn connect(endpoints: &[String]) -> Result<Self, StoreError> {
        let client = Client::connect(endpoints, None).await?;
        let store = Self { client, compacted: Arc::new(AtomicI64::new(0)) };
        store.check_format().await?;
        let compacted = store.probe_compacted().await?;
        store.compacted.store(compacted, Ordering::Release);
        Ok(store)
    }

    async fn check_format(&self) -> Result<(), StoreError> {
        let expected = FORMAT_VERSION.to_string();
        let txn = Txn::new()
            .when([Compare::create_revision(FORMAT_VERSION_KEY, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(FORMAT_VERSION_KEY, expected.clone(), None)])
            .or_else([TxnOp::get(FORMAT_VERSION_KEY, None)]);
        let response = self.client.kv_client().txn(txn).await?;
        if response.succeeded() {
            return Ok(());
        }
        let found = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            })
            .unwrap_or_default();
        if found == expected {
            Ok(())
        } else {
            Err(StoreError::UnsupportedFormat { found, expected: FORMAT_VERSION })
        }
    }

    /// etcd does not report its compacted revision directly, but a watch from revision 1 is
    /// cancelled with it.
    async fn probe_compacted(&self) -> Result<Revision, StoreError> {
        let mut stream =
            self.client.watch_client().watch(FORMAT_VERSION_KEY, Some(WatchOptions::new().with_start_revision(1))).await?;
        loop {
            match stream.message().await? {
                Some(response) if response.compact_revision() > 0 => return Ok(response.compact_revision()),
                Some(response) if response.created() && !response.canceled() => return Ok(0),
                Some(_) => continue,
                None => return Ok(0),
            }
        }
    }

    fn check_not_compacted(&self, requested: Revision) -> Result<(), StoreError> {
        let compacted = self.compacted.load(Ordering::Acquire);
        if requested < compacted {
            Err(StoreError::Compacted { requested, compacted })
        } else {
            Ok(())
        }
    }

    /// Maps etcd's own compaction and future-revision errors onto ours.
    fn map_error(&self, error: etcd_client::Error, requested: Option<Revision>) -> StoreError {
        let text = error.to_string();
        match requested {
            Some(requested) if text.contains("required revision has been compacted") => {
                StoreError::Compacted { requested, compacted: self.compacted.load(Ordering::Acquire).max(requested + 1) }
            }
            Some(requested) if text.contains("required revision is a future revision") => {
                StoreError::FutureRevision { requested, current: requested - 1 }
            }
            _ => StoreError::Etcd(error),
        }
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map(|h| h.revision()).unwrap_or_default()
}

fn convert(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

/// The end of the key range holding every key with this prefix (etcd's `with_prefix`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every key: etcd's "\0" range end.
    vec![0]
}

/// The current value of `key` from a transaction's `or_else` get.
fn current_from(ops: Vec<TxnOpResponse>) -> Option<KeyValue> {
    ops.into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().map(convert),
        _ => None,
    })
}

#[async_trait::async_trait]
impl crate::Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let response = self.client.kv_client().get(FORMAT_VERSION_KEY, Some(GetOptions::new().with_count_only())).await?;
        Ok(header_revision(response.header()))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let response = self.client.kv_client().txn(txn).await?;
        if response.succeeded() {
            Ok(header_revision(response.header()))
        } else {
            Err(StoreError::AlreadyExists { key: key.to_owned() })
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value.to_vec(), None)])
            .or_else([TxnOp::get(key, None)]);
        let response = self.client.kv_client().txn(txn).await?;
        if response.succeeded() {
            return Ok(header_revision(response.header()));
        }
        match current_from(response.op_responses()) {
            Some(current) => Err(StoreError::Conflict { key: key.to_owned(), current: Some(Box::new(current)) }),
            None => Err(StoreError::NotFound { key: key.to_owned() }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let condition = match expected {
            Some(revision) => Compare::mod_revision(key, CompareOp::Equal, revision),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([condition])
            .and_then([TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)]);
        let response = self.client.kv_client().txn(txn).await?;
        let revision = header_revision(response.header());
        let succeeded = response.succeeded();
        let ops = response.op_responses();
        if succeeded {
            let deleted = ops.into_iter().find_map(|op| match op {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().map(convert),
                _ => None,
            });
            // The condition held, so the key existed and its previous value came back.
            return deleted
                .map(|kv| KeyValue { mod_revision: revision, ..kv })
                .ok_or_else(|| StoreError::NotFound { key: key.to_owned() });
        }
        match current_from(ops) {
            Some(current) => Err(StoreError::Conflict { key: key.to_owned(), current: Some(Box::new(current)) }),
            None => Err(StoreError::NotFound { key: key.to_owned() }),
        }
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>, StoreError> {
        if let Some(r) = revision {
            self.check_not_compacted(r)?;
        }
        let options = revision.map(|r| GetOptions::new().with_revision(r));
        let response = self.client.kv_client().get(key, options).await.map_err(|e| self.map_error(e, revision))?;
        Ok(response.kvs().first().map(convert))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
        if let Some(r) = options.revision {
            self.check_not_compacted(r)?;
        }
        let start = match options.start_after.filter(|s| s.as_str() >= prefix) {
            // The smallest key after `start_after`.
            Some(after) => {
                let mut key = after.into_bytes();
                key.push(0);
                key
            }
            None => prefix.as_bytes().to_vec(),
        };
        let mut get = GetOptions::new().with_range(prefix_end(prefix));
        if let Some(r) = options.revision {
            get = get.with_revision(r);
        }
        if let Some(limit) = options.limit.filter(|l| *l > 0) {
            get = get.with_limit(limit as i64);
        }
        let response = self.client.kv_client().get(start, Some(get)).await.map_err(|e| self.map_error(e, options.revision))?;
        Ok(ListResult {
            items: response.kvs().iter().map(convert).collect(),
            revision: options.revision.unwrap_or_else(|| header_revision(response.header())),
            more: response.more(),
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.check_not_compacted(after)?;
        let options = WatchOptions::new().with_range(prefix_end(prefix)).with_start_revision(after + 1).with_prev_key();
        let mut stream = self.client.watch_client().watch(prefix, Some(options)).await?;
        let compacted = self.compacted.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Event, StoreError>>(256);
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = stream.message() => message,
                    _ = sender.closed() => return,
                };
                let response = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return,
                    Err(error) => {
                        let _ = sender.send(Err(StoreError::Etcd(error))).await;
                        return;
                    }
                };
                if response.compact_revision() > 0 {
                    compacted.fetch_max(response.compact_revision(), Ordering::AcqRel);
                    let error = StoreError::Compacted { requested: after, compacted: response.compact_revision() };
                    let _ = sender.send(Err(error)).await;
                    return;
                }
                if response.canceled() {
                    let reason = response.cancel_reason().to_owned();
                    let _ = sender.send(Err(StoreError::Io(std::io::Error::other(format!("etcd cancelled the watch: {reason}"))))).await;
                    return;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let prev = event.prev_kv().map(convert);
                    let converted = match event.event_type() {
                        EventType::Put => Event { kind: EventKind::Put, kv: convert(kv), prev: prev.filter(|p| p.create_revision == kv.create_revision()) },
                        EventType::Delete => {
                            let last = prev.clone().unwrap_or_else(|| convert(kv));
                            Event { kind: EventKind::Delete, kv: KeyValue { mod_revision: kv.mod_revision(), ..last }, prev }
                        }
                    };
                    if sender.send(Ok(converted)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(receiver).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        if revision <= self.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.client.kv_client().compact(revision, Some(CompactionOptions::new().with_physical())).await {
            Ok(_) => {}
            // Another server compacted further already.
            Err(error) if error.to_string().contains("required revision has been compacted") => {}
            Err(error) => return Err(StoreError::Etcd(error)),
        }
        self.compacted.fetch_max(revision, Ordering::AcqRel);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.compacted.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
