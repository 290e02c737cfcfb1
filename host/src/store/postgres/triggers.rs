//! Triggers written together: every trigger (without an idempotency key)
//! that arrives while the last insert was in flight goes into the next
//! one, a single statement that also wakes the other hosts once. Under a
//! burst of API triggers, inserts and their commits are shared as
//! outcomes are (see `outcomes`); a lone trigger costs what it always did.

use std::sync::Weak;

use tokio::sync::{mpsc, oneshot};

use super::runs::{OnConflict, Rows};
use super::{Inner, PgStore};
use crate::store::{NewRun, Result, StoreError};

/// The most triggers one statement writes.
const BATCH: usize = 256;

/// A triggered run to record, and where its id goes.
pub(super) struct Trigger {
    pub run: NewRun,
    pub answer: oneshot::Sender<Result<i64>>,
}

/// Writes triggers as they come until the store is gone.
pub(super) async fn write(store: Weak<Inner>, mut queue: mpsc::UnboundedReceiver<Trigger>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Some(inner) = store.upgrade() else { return };
        let store = PgStore { inner };
        let mut rows = Rows::default();
        batch.iter().for_each(|trigger| rows.push(&trigger.run, false));
        let written = match store.client().await {
            Ok(client) => store.insert_rows(&client, &rows, OnConflict::Fail, true).await,
            Err(error) => Err(error),
        };
        match written {
            Ok(ids) if ids.len() == batch.len() => {
                for (trigger, (id, ..)) in batch.into_iter().zip(ids) {
                    let _ = trigger.answer.send(Ok(id));
                }
            }
            Ok(ids) => {
                let error = format!("{} of {} triggers came back from their insert", ids.len(), batch.len());
                for trigger in batch {
                    let source = error.clone().into();
                    let error = StoreError::Backend {
                        store: store.describe.clone(),
                        kind: crate::store::FailureKind::Other,
                        source,
                    };
                    let _ = trigger.answer.send(Err(error));
                }
            }
            Err(error) => {
                let (kind, message) = (error.kind(), error.to_string());
                let _ = batch.pop().map(|last| last.answer.send(Err(error)));
                for trigger in batch {
                    let error =
                        StoreError::Backend { store: store.describe.clone(), kind, source: message.clone().into() };
                    let _ = trigger.answer.send(Err(error));
                }
            }
        }
    }
}
