//! `memory://` backend: a map in this process, with the same CAS semantics as the
//! others. Stores opened with the same name share data.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;

use crate::key::{validate_key, validate_prefix};
use crate::{Listed, Object, Result, Store, StoreError, Version};

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<String, (Vec<u8>, u64)>,
    next: u64,
}

/// A bucket held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    name: String,
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    /// A new, empty, unnamed store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide store called `name`.
    pub fn named(name: &str) -> Self {
        static REGISTRY: OnceLock<Mutex<HashMap<String, MemoryStore>>> = OnceLock::new();
        let mut map = REGISTRY.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(name.to_owned())
            .or_insert_with(|| MemoryStore { name: name.to_owned(), inner: Arc::default() })
            .clone()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

fn version(generation: u64) -> Version {
    Version(format!("m{generation}"))
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        validate_key(key)?;
        Ok(self.with(|m| m.objects.get(key).map(|(b, g)| Object { bytes: b.clone(), version: version(*g) })))
    }

    async fn put_create(&self, key: &str, bytes: Vec<u8>) -> Result<Version> {
        validate_key(key)?;
        self.with(|m| {
            if m.objects.contains_key(key) {
                return Err(StoreError::AlreadyExists { key: key.to_owned(), maybe_applied: false });
            }
            m.next += 1;
            let g = m.next;
            m.objects.insert(key.to_owned(), (bytes, g));
            Ok(version(g))
        })
    }

    async fn put_if_match(&self, key: &str, bytes: Vec<u8>, expected: &Version) -> Result<Version> {
        validate_key(key)?;
        self.with(|m| {
            match m.objects.get(key) {
                Some((_, g)) if &version(*g) == expected => {}
                _ => return Err(StoreError::PreconditionFailed { key: key.to_owned(), maybe_applied: false }),
            }
            m.next += 1;
            let g = m.next;
            m.objects.insert(key.to_owned(), (bytes, g));
            Ok(version(g))
        })
    }

    async fn delete_if_match(&self, key: &str, expected: &Version) -> Result<()> {
        validate_key(key)?;
        self.with(|m| match m.objects.get(key) {
            Some((_, g)) if &version(*g) == expected => {
                m.objects.remove(key);
                Ok(())
            }
            _ => Err(StoreError::PreconditionFailed { key: key.to_owned(), maybe_applied: false }),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        validate_prefix(prefix)?;
        Ok(self.with(|m| {
            m.objects
                .range(prefix.to_owned()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, (b, _))| Listed { key: k.clone(), size: b.len() as u64 })
                .collect()
        }))
    }

    fn url(&self) -> String {
        format!("memory://{}", self.name)
    }
}
