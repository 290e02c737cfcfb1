// The runs view (#/runs?job=…&status=…&trigger=…&since=…&until=…&q=…&cursor=…):
// newest first, filtered, a page at a time by the API's cursor (never an
// offset, so the hundredth page costs what the first does). The filters
// live in the address, so a filtered page can be bookmarked or shared.
// The first page follows the live stream; an older page updates the runs
// it shows.

import { get } from './api.js';
import { jobLink } from './charts.js';
import { duration, h, query, replace, runMillis, statusBadge, throttle, when } from './dom.js';

const STATUSES = ['pending', 'running', 'succeeded', 'failed', 'timed_out', 'out_of_fuel', 'cancelled', 'abandoned', 'skipped', 'missed'];
const TRIGGERS = ['schedule', 'catch-up', 'retry', 'manual'];
const FILTERS = ['job', 'status', 'trigger', 'since', 'until', 'q'];
const PAGE = 50;

export function runRow(run, { showJob = true, current = null } = {}) {
  return h(
    'tr',
    { id: `run-${run.id}`, 'data-run': run.id, 'data-status': run.status, 'aria-current': current === run.id ? 'true' : null },
    h('td', { 'data-label': 'Run' }, h('a', { href: `#/runs/${run.id}`, 'data-testid': `run-link-${run.id}` }, `#${run.id}`)),
    showJob ? h('td', { 'data-label': 'Job' }, jobLink(run.job)) : null,
    h('td', { 'data-label': 'Status' }, statusBadge(run.status, { 'data-testid': `run-status-${run.id}` })),
    h('td', { 'data-label': 'Trigger' }, run.trigger, run.attempt > 1 ? h('span', { class: 'muted' }, ` · attempt ${run.attempt}`) : null),
    h('td', { 'data-label': 'Scheduled' }, when(run.scheduled_for)),
    h('td', { 'data-label': 'Took' }, duration(runMillis(run))),
    h('td', { 'data-label': 'Error', class: 'error-cell' }, run.error ? h('span', { title: run.error }, run.error) : null),
  );
}

export function runsTable(runs, options = {}) {
  const { showJob = true } = options;
  if (runs.length === 0) return h('p', { class: 'muted', 'data-testid': 'no-runs' }, 'No runs.');
  const heads = ['Run', showJob ? 'Job' : null, 'Status', 'Trigger', 'Scheduled', 'Took', 'Error'].filter(Boolean);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'runs', 'data-testid': 'runs-table' },
      h('thead', {}, h('tr', {}, heads.map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, runs.map((run) => runRow(run, options))),
    ),
  );
}

/** datetime-local text ↔ RFC 3339, in the browser's zone. */
const toLocalInput = (iso) => {
  if (!iso) return '';
  const date = new Date(iso);
  return new Date(date.getTime() - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
};
const fromLocalInput = (text) => (text ? new Date(text).toISOString() : '');

function filterForm(params, jobs) {
  const select = (name, label, options) =>
    h(
      'label',
      {},
      label,
      h(
        'select',
        { name, id: `filter-${name}` },
        h('option', { value: '' }, 'any'),
        options.map((option) => h('option', { value: option, selected: params.get(name) === option }, option.replaceAll('_', ' '))),
      ),
    );
  const form = h(
    'form',
    { class: 'filters', id: 'runs-filters', role: 'search', 'aria-label': 'Filter runs' },
    h('label', {}, 'Search', h('input', { type: 'search', name: 'q', id: 'filter-q', value: params.get('q') ?? '', placeholder: 'job, error text or run id' })),
    select('job', 'Job', jobs),
    select('status', 'Status', STATUSES),
    select('trigger', 'Trigger', TRIGGERS),
    h('label', {}, 'From', h('input', { type: 'datetime-local', step: 1, name: 'since', id: 'filter-since', value: toLocalInput(params.get('since')) })),
    h('label', {}, 'Until', h('input', { type: 'datetime-local', step: 1, name: 'until', id: 'filter-until', value: toLocalInput(params.get('until')) })),
    h('button', { type: 'submit', id: 'filter-apply' }, 'Apply'),
    h('a', { href: '#/runs', class: 'button-link' }, 'Clear'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const name of FILTERS) next[name] = data.get(name) ?? '';
    next.since = fromLocalInput(next.since);
    next.until = fromLocalInput(next.until);
    window.location.hash = `#/runs${query(next)}`;
  });
  return form;
}

export function runsList(main, params) {
  let alive = true;
  let shown = [];
  const cursor = params.get('cursor');
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) ?? '']));
  let form = null;
  let jobs = [];
  const render = async () => {
    const [page, view] = await Promise.all([get(`/runs${query({ ...filters, cursor, limit: PAGE })}`), jobs.length ? null : get('/jobs')]);
    if (!alive) return;
    if (view) jobs = view.jobs.map((job) => job.name);
    form ??= filterForm(params, jobs);
    shown = page.runs;
    const older = page.next_cursor ? h('a', { href: `#/runs${query({ ...filters, cursor: page.next_cursor })}`, id: 'runs-older', rel: 'next' }, 'Older →') : null;
    const newest = cursor ? h('a', { href: `#/runs${query(filters)}`, id: 'runs-newest' }, '← Newest') : null;
    replace(
      main,
      h('h1', {}, 'Runs'),
      form,
      h('p', { class: 'muted', id: 'runs-summary' }, cursor ? 'An older page; it updates the runs it shows.' : 'Newest first, live.'),
      runsTable(page.runs),
      h('nav', { class: 'pager', 'aria-label': 'Pages of runs' }, newest, older),
    );
  };
  const refresh = throttle(() => render().catch(error), 500);
  const error = (problem) => replace(main, h('h1', {}, 'Runs'), form, h('p', { class: 'load-error', role: 'alert' }, problem.message));
  render().catch(error);
  const onEvent = (event) => {
    if (!cursor || event.stage === 'resync') return refresh();
    if (event.run_id && shown.some((run) => run.id === event.run_id)) refresh();
  };
  return { onEvent, stop: () => (alive = false) };
}
