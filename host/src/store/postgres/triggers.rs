//! Triggers written together: every trigger (without an idempotency key)
//! that arrives while the last insert was in flight goes into the next
//! one, a single statement that also wakes the other hosts once. Under a
//! burst of API triggers, inserts and their commits are shared as
//! outcomes are (see `outcomes`); a lone trigger costs what it always did.

use std::sync::Weak;

use tokio::sync::{mpsc, oneshot};

use super::runs::{OnConflict, Rows};
use super::{Inner, PgStore};
use crate::store::{FailureKind, NewRun, Result, StoreError};

/// The most triggers one statement writes.
const BATCH: usize = 256;

/// A triggered run to record, and where its id goes.
pub(super) struct Trigger {
    pub run: NewRun,
    pub answer: oneshot::Sender<Result<i64>>,
}

/// Writes triggers as they come until the store is gone.
pub(super) async fn write(store: Weak<Inner>, mut queue: mpsc::UnboundedReceiver<Trigger>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let Some(inner) = store.upgrade() else { return };
        let store = PgStore { inner };
        let mut rows = Rows::default();
        batch.iter().for_each(|trigger| rows.push(&trigger.run, false));
        let written = match store.client().await {
            Ok(client) => store.insert_rows(&client, &rows, OnConflict::Fail, true).await,
            Err(error) => Err(error),
        };
        let answers: Vec<Result<i64>> = match written {
            Ok(ids) if ids.len() == batch.len() => ids.into_iter().map(|(id, ..)| Ok(id)).collect(),
            Ok(ids) => {
                let source = format!("{} of {} triggers came back from their insert", ids.len(), batch.len());
                let error = StoreError::Backend {
                    store: store.describe.clone(),
                    kind: FailureKind::Other,
                    source: source.into(),
                };
                super::shared_failure(error, batch.len(), &store.describe).into_iter().map(Err).collect()
            }
            Err(error) => super::shared_failure(error, batch.len(), &store.describe).into_iter().map(Err).collect(),
        };
        for (trigger, answer) in batch.drain(..).zip(answers) {
            let _ = trigger.answer.send(answer);
        }
    }
}
