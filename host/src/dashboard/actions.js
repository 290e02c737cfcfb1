// What an admin can do from the dashboard: trigger (now or later, with a
// payload), pause (with a reason) and resume a job, cancel and retry a
// run. Each asks in a native <dialog> (focus kept inside, Escape closes)
// and reports in a toast. With the read-only token no buttons are made;
// the API refuses these requests anyway.

import { post } from './api.js';
import { encode, h } from './dom.js';

/** Set at start from GET /api/v1/session. */
export const session = { access: 'read' };

export const isAdmin = () => session.access === 'admin';

/** A button that does `action`; none at all for the read-only token. */
export function actionButton(label, action, attrs = {}) {
  if (!isAdmin()) return null;
  return h('button', { type: 'button', class: 'action', onclick: action, ...attrs }, label);
}

export function toast(message, { link, kind = 'info' } = {}) {
  const region = document.getElementById('toasts');
  const item = h(
    'div',
    { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'toast' },
    h('span', {}, message),
    link ? h('a', { href: link.href, 'data-testid': 'toast-link' }, link.text) : null,
    h('button', { type: 'button', class: 'close', 'aria-label': 'Dismiss', onclick: () => item.remove() }, '×'),
  );
  region.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 20_000 : 8_000);
}

const failed = (what) => (error) => toast(`${what}: ${error.message}`, { kind: 'error' });

/**
 * Shows a modal form; resolves to its FormData when confirmed, null when
 * dismissed. `fields` go between the text and the buttons.
 */
function ask({ id, title, text, fields = [], confirm, danger = false }) {
  return new Promise((resolve) => {
    const form = h(
      'form',
      { method: 'dialog' },
      h('h2', { id: `${id}-title` }, title),
      text ? h('p', {}, text) : null,
      fields,
      h(
        'div',
        { class: 'buttons' },
        h('button', { type: 'button', value: 'cancel', id: `${id}-dismiss`, onclick: () => dialog.close('cancel') }, 'Back'),
        h('button', { type: 'submit', value: 'ok', id: `${id}-confirm`, class: danger ? 'danger' : 'primary' }, confirm),
      ),
    );
    const dialog = h('dialog', { id, 'aria-labelledby': `${id}-title` }, form);
    dialog.addEventListener('close', () => {
      const data = dialog.returnValue === 'ok' ? new FormData(form) : null;
      dialog.remove();
      resolve(data);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export async function trigger(job) {
  const data = await ask({
    id: 'trigger-dialog',
    title: `Trigger ${job}`,
    text: 'The payload is the run’s stdin: type it or paste it here (may be empty).',
    fields: [
      h('label', { for: 'payload' }, 'Payload'),
      h('textarea', { id: 'payload', name: 'payload', rows: 6, spellcheck: 'false', class: 'mono' }),
      h(
        'fieldset',
        {},
        h('legend', {}, 'When'),
        h('label', {}, h('input', { type: 'radio', name: 'when', value: 'now', checked: true, id: 'when-now' }), ' now'),
        h('label', {}, h('input', { type: 'radio', name: 'when', value: 'in', id: 'when-in' }), ' in '),
        h('input', { type: 'text', name: 'in', id: 'trigger-in', placeholder: '10m', size: 6, 'aria-label': 'Delay, as 30s, 10m or 2h' }),
        h('label', {}, h('input', { type: 'radio', name: 'when', value: 'at', id: 'when-at' }), ' at '),
        h('input', { type: 'datetime-local', name: 'at', id: 'trigger-at', step: 1, 'aria-label': 'Local time to start' }),
      ),
    ],
    confirm: `Trigger ${job}`,
  });
  if (!data) return;
  const params = new URLSearchParams();
  const later = data.get('when');
  if (later === 'in' && data.get('in')) params.set('in', data.get('in').trim());
  if (later === 'at' && data.get('at')) params.set('at', new Date(data.get('at')).toISOString());
  const search = params.toString() ? `?${params}` : '';
  try {
    const answer = await post(`/jobs/${encode(job)}/trigger${search}`, data.get('payload'), 'application/octet-stream');
    const note = answer.created ? (search ? 'scheduled' : 'queued') : 'already made for this key';
    toast(`Run ${answer.id} of ${job} ${note}.`, { link: { href: `#/runs/${answer.id}`, text: `Open run ${answer.id}` } });
  } catch (error) {
    failed(`Triggering ${job} failed`)(error);
  }
}

export async function pause(job) {
  const data = await ask({
    id: 'pause-dialog',
    title: `Pause ${job}`,
    text: 'Its scheduled fires stop until it is resumed; triggers still run. The reason is shown while it is paused.',
    fields: [
      h('label', { for: 'pause-reason' }, 'Reason (optional)'),
      h('input', { type: 'text', id: 'pause-reason', name: 'reason', maxlength: 500 }),
    ],
    confirm: `Pause ${job}`,
  });
  if (!data) return;
  const reason = data.get('reason').trim();
  try {
    await post(`/jobs/${encode(job)}/pause`, reason ? JSON.stringify({ reason }) : '', reason ? 'application/json' : null);
    toast(`${job} is paused.`);
  } catch (error) {
    failed(`Pausing ${job} failed`)(error);
  }
}

export async function resume(job) {
  try {
    await post(`/jobs/${encode(job)}/resume`);
    toast(`${job} is resumed; it fires from its next scheduled time.`);
  } catch (error) {
    failed(`Resuming ${job} failed`)(error);
  }
}

export async function cancel(run) {
  const data = await ask({
    id: 'cancel-dialog',
    title: `Cancel run ${run.id}`,
    text: run.status === 'running'
      ? `Run ${run.id} of ${run.job} is running: it is stopped and recorded cancelled.`
      : `Run ${run.id} of ${run.job} has not started: it will not run.`,
    confirm: `Cancel run ${run.id}`,
    danger: true,
  });
  if (!data) return;
  try {
    await post(`/runs/${run.id}/cancel`);
    toast(`Cancelling run ${run.id}.`);
  } catch (error) {
    failed(`Cancelling run ${run.id} failed`)(error);
  }
}

export async function retry(run) {
  const data = await ask({
    id: 'retry-dialog',
    title: `Retry run ${run.id}`,
    text: `A new run of ${run.job}, with the same payload.`,
    confirm: `Retry run ${run.id}`,
  });
  if (!data) return;
  try {
    const answer = await post(`/runs/${run.id}/retry`);
    toast(`Run ${answer.id} retries run ${run.id}.`, { link: { href: `#/runs/${answer.id}`, text: `Open run ${answer.id}` } });
  } catch (error) {
    failed(`Retrying run ${run.id} failed`)(error);
  }
}
