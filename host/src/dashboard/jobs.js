// The jobs view (#/jobs) and one job's page (#/jobs/NAME): schedules in
// words and as cron, next fires, last outcome, pauses and load errors,
// and per job a strip of recent runs and a chart of their durations.

import { get } from './api.js';
import { actionButton, pause, resume, trigger } from './actions.js';
import { durationChart, firesTimeline, historyStrip, jobLink } from './charts.js';
import { encode, h, query, replace, statusBadge, throttle, when } from './dom.js';
import { runsTable } from './runs.js';

/** Runs shown per job in the strip and chart. */
const RECENT = 30;

async function recent(job, limit = RECENT) {
  try {
    return (await get(`/runs${query({ job, limit })}`)).runs;
  } catch {
    return [];
  }
}

async function detail(job) {
  if (!job.module_sha256) return job;
  try {
    return await get(`/jobs/${encode(job.name)}`);
  } catch {
    return job;
  }
}

function scheduleCell(job, { zone = true } = {}) {
  if (!job.schedule) return h('span', { class: 'muted' }, 'triggered only');
  return h(
    'div',
    { class: 'schedule' },
    job.schedule_text ? h('span', { 'data-testid': 'schedule-text' }, job.schedule_text) : null,
    h('code', { 'data-testid': 'schedule-cron' }, job.schedule),
    zone && job.timezone && job.timezone !== 'UTC' ? h('span', { class: 'muted' }, ` ${job.timezone}`) : null,
  );
}

function stateNotes(job) {
  return [
    job.paused
      ? h(
          'p',
          { class: 'paused', 'data-testid': 'paused' },
          h('strong', {}, 'Paused'),
          job.paused_reason ? [': ', h('span', { 'data-testid': 'paused-reason' }, job.paused_reason)] : null,
        )
      : null,
    job.module_sha256 && job.enabled === false ? h('p', { class: 'muted' }, 'Disabled in its declaration') : null,
    job.load_error
      ? h('p', { class: 'load-error', role: 'note', 'data-testid': 'load-error' }, h('strong', {}, 'Does not load: '), job.load_error)
      : null,
  ];
}

function lastOutcome(job) {
  const last = job.last_run;
  const running = job.in_flight?.length ? h('span', { class: 'status status-running' }, `${job.in_flight.length} running`) : null;
  if (!last) return running ?? h('span', { class: 'muted' }, 'never ran');
  return h('div', { class: 'outcome' }, h('a', { href: `#/runs/${last.id}` }, statusBadge(last.status)), ' ', when(last.ended_at), running ? [h('br'), running] : null);
}

function jobActions(job) {
  if (!job.module_sha256) return null;
  const safe = job.name;
  return h(
    'div',
    { class: 'actions' },
    actionButton('Trigger…', () => trigger(job.name), { id: `trigger-${safe}`, 'data-action': 'trigger' }),
    job.paused
      ? actionButton('Resume', () => resume(job.name), { id: `resume-${safe}`, 'data-action': 'resume' })
      : actionButton('Pause…', () => pause(job.name), { id: `pause-${safe}`, 'data-action': 'pause' }),
  );
}

function jobRow(job, runs) {
  return h(
    'tr',
    { id: `job-${job.name}`, 'data-job': job.name, class: job.load_error ? 'has-error' : null },
    h('th', { scope: 'row', 'data-label': 'Job' }, jobLink(job.name), stateNotes(job)),
    h('td', { 'data-label': 'Schedule' }, scheduleCell(job)),
    h('td', { 'data-label': 'Next fires' }, job.paused ? h('span', { class: 'muted' }, 'paused') : firesTimeline(job.next_fires ?? (job.next_fire ? [job.next_fire] : []))),
    h('td', { 'data-label': 'Last outcome' }, lastOutcome(job)),
    h('td', { 'data-label': 'Recent runs' }, historyStrip(runs, { job: job.name })),
    h('td', { 'data-label': 'Durations' }, durationChart(runs)),
    h('td', { 'data-label': 'Actions' }, jobActions(job)),
  );
}

function storeNote(view) {
  const problems = [];
  if (!view.ready) problems.push(h('p', { class: 'warning', role: 'note' }, 'The host is starting or shutting down: it takes no commands just now.'));
  if (view.store?.failing) {
    problems.push(
      h('p', { class: 'load-error', role: 'note' }, h('strong', {}, 'The store is failing: '), view.store.failing, ` (${view.store.held_outcomes} outcomes held in memory)`),
    );
  }
  return problems;
}

/** The hosts sharing the store, when it is shared (PostgreSQL); nothing on one host. */
function hostsPanel(hosts) {
  if (!hosts?.shared) return null;
  const alive = hosts.hosts.filter((host) => host.alive).length;
  return h(
    'section',
    { class: 'hosts', 'aria-labelledby': 'hosts-title', 'data-testid': 'hosts' },
    h('h2', { id: 'hosts-title' }, 'Hosts'),
    h('p', { class: 'muted' }, `${alive} of ${hosts.hosts.length} alive, sharing one store`),
    hosts.disagreements.map((d) =>
      h(
        'p',
        { class: 'warning', role: 'note', 'data-testid': 'disagreement' },
        h('strong', {}, `${d.job}: `),
        `the hosts serve different ${d.what === 'module' ? 'module versions' : 'declarations'} (${Object.keys(d.hosts).join(', ')})`,
      ),
    ),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'hosts-table' },
        h('caption', { class: 'visually-hidden' }, 'Hosts sharing the store'),
        h('thead', {}, h('tr', {}, ['Host', 'State', 'Last heartbeat', 'Version', 'Jobs'].map((name) => h('th', { scope: 'col' }, name)))),
        h(
          'tbody',
          {},
          hosts.hosts.map((host) =>
            h(
              'tr',
              { 'data-host': host.id },
              h('th', { scope: 'row', 'data-label': 'Host' }, host.name, host.id === hosts.this_host ? h('span', { class: 'muted' }, ' (this one)') : null),
              h('td', { 'data-label': 'State' }, h('span', { class: `status ${host.alive ? 'status-succeeded' : 'status-failed'}` }, host.alive ? 'alive' : 'silent')),
              h('td', { 'data-label': 'Last heartbeat' }, when(host.heartbeat_at)),
              h('td', { 'data-label': 'Version' }, host.version),
              h('td', { 'data-label': 'Jobs' }, String(Object.keys(host.modules).length)),
            ),
          ),
        ),
      ),
    ),
  );
}

export function jobsList(main) {
  let alive = true;
  const render = async () => {
    const [view, hosts] = await Promise.all([get('/jobs'), get('/hosts').catch(() => null)]);
    const rows = await Promise.all(view.jobs.map(async (job) => [await detail(job), await recent(job.name)]));
    if (!alive) return;
    const failing = view.jobs.filter((job) => job.load_error).length;
    replace(
      main,
      h('h1', {}, 'Jobs'),
      h('p', { class: 'muted' }, `${view.jobs.length} jobs`, failing ? h('span', { class: 'load-error-count' }, ` · ${failing} with load errors`) : null),
      storeNote(view),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'jobs', id: 'jobs-table', 'data-testid': 'jobs-table' },
          h('caption', { class: 'visually-hidden' }, 'Jobs, their schedules and recent runs'),
          h('thead', {}, h('tr', {}, ['Job', 'Schedule', 'Next fires', 'Last outcome', 'Recent runs', 'Durations'].map((name) => h('th', { scope: 'col' }, name)), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
          h('tbody', {}, rows.map(([job, runs]) => jobRow(job, runs))),
        ),
      ),
      hostsPanel(hosts),
    );
  };
  // Each refresh asks for every job's fires and runs: once a second at most.
  const refresh = throttle(() => render().catch(showError(main)), 1000);
  render().catch(showError(main));
  return { onEvent: refresh, stop: () => (alive = false) };
}

export function jobPage(main, name) {
  let alive = true;
  const render = async () => {
    const [job, runs] = await Promise.all([get(`/jobs/${encode(name)}`), recent(name, 50)]);
    if (!alive) return;
    const field = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
    replace(
      main,
      h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Jobs'), ' / '),
      h('h1', { 'data-testid': 'job-name' }, name),
      stateNotes(job),
      jobActions(job),
      h(
        'dl',
        { class: 'fields' },
        field('Schedule', scheduleCell(job, { zone: false })),
        field('Time zone', job.timezone ?? 'UTC'),
        field('Last outcome', lastOutcome(job)),
        field('Module', job.module_sha256 ? h('code', { class: 'hash' }, job.module_sha256) : '—'),
        field('Payload limit', job.payload_limit ? `${job.payload_limit} bytes` : '—'),
      ),
      h('h2', {}, 'Next fires'),
      job.next_fires?.length
        ? [firesTimeline(job.next_fires, { width: 480, height: 34, labels: true }), h('ol', { class: 'fires', 'data-testid': 'next-fires' }, job.next_fires.map((fire) => h('li', {}, when(fire), ' ', h('span', { class: 'muted' }, fire))))]
        : h('p', { class: 'muted' }, job.paused ? 'None while paused.' : 'None: it runs only when triggered.'),
      h('h2', {}, 'Recent runs'),
      historyStrip(runs, { job: name }),
      durationChart(runs, { width: 480, height: 90, labels: true }),
      runsTable(runs, { showJob: false }),
      h('p', {}, h('a', { href: `#/runs${query({ job: name })}` }, `All runs of ${name} →`)),
    );
  };
  const refresh = throttle(() => render().catch(showError(main)), 500);
  render().catch(showError(main));
  return {
    onEvent: (event) => (event.stage === 'resync' || event.job === name ? refresh() : null),
    stop: () => (alive = false),
  };
}

export const showError = (main) => (error) =>
  replace(main, h('h1', {}, 'Could not load this page'), h('p', { class: 'load-error', role: 'alert' }, error.message));
