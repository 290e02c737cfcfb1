// One run's page (#/runs/ID): its fields, captured stdout and stderr,
// fuel, module hash, parent run, and every attempt of the same fire;
// cancel while it may still change, retry once it has ended. It follows
// the live stream.

import { get } from './api.js';
import { actionButton, cancel, retry } from './actions.js';
import { jobLink } from './charts.js';
import { duration, h, localTime, query, replace, runMillis, statusBadge, throttle, unfinished, when } from './dom.js';
import { runsTable } from './runs.js';

function timeField(iso) {
  return iso ? [when(iso), h('span', { class: 'muted' }, ` ${localTime(iso)}`)] : h('span', { class: 'muted' }, '—');
}

function output(name, text, complete) {
  return [
    h('h3', {}, name),
    text
      ? h('pre', { class: 'output', 'data-testid': name, tabindex: 0, 'aria-label': `${name} of the run` }, text)
      : h('p', { class: 'muted', 'data-testid': `${name}-empty` }, complete ? `Nothing on ${name}.` : 'Recorded when the run ends.'),
  ];
}

export function runPage(main, id) {
  let alive = true;
  let job = null;
  let fire = null;
  const render = async () => {
    const [run, out] = await Promise.all([get(`/runs/${id}`), get(`/runs/${id}/output`)]);
    job = run.job;
    fire = run.scheduled_for;
    const attempts = await get(`/runs${query({ job: run.job, scheduled_for: run.scheduled_for, limit: 100 })}`).catch(() => null);
    if (!alive) return;
    const field = (label, value, testid) => [h('dt', {}, label), h('dd', { 'data-testid': testid }, value ?? h('span', { class: 'muted' }, '—'))];
    replace(
      main,
      h('p', { class: 'crumbs' }, h('a', { href: '#/runs' }, 'Runs'), ' / ', jobLink(run.job), ' / '),
      h('h1', {}, `Run ${run.id} `, statusBadge(run.status, { 'data-testid': 'run-status' })),
      h(
        'div',
        { class: 'actions' },
        unfinished(run) ? actionButton('Cancel…', () => cancel(run), { id: 'cancel-run', 'data-action': 'cancel', class: 'action danger' }) : null,
        unfinished(run) ? null : actionButton('Retry…', () => retry(run), { id: 'retry-run', 'data-action': 'retry' }),
      ),
      run.error ? h('p', { class: 'load-error', 'data-testid': 'run-error' }, run.error) : null,
      h(
        'dl',
        { class: 'fields' },
        field('Job', jobLink(run.job)),
        field('Status', statusBadge(run.status)),
        field('Trigger', `${run.trigger}, attempt ${run.attempt}`),
        field('Scheduled for', timeField(run.scheduled_for)),
        field('Started', timeField(run.started_at)),
        field('Ended', timeField(run.ended_at)),
        field('Took', run.started_at ? duration(runMillis(run)) : null),
        field('Exit code', run.exit_code, 'exit-code'),
        field('Fuel used', run.fuel_used?.toLocaleString(), 'fuel'),
        field('Module', run.module_sha256 ? h('code', { class: 'hash' }, run.module_sha256) : null, 'module'),
        field('Parent run', run.parent_run ? h('a', { href: `#/runs/${run.parent_run}` }, `#${run.parent_run}`) : null, 'parent'),
        field('Output', `${run.output_bytes} bytes${run.output_dropped ? `, ${run.output_dropped} dropped past the cap` : ''}`),
      ),
      h('h2', {}, 'Output'),
      output('stdout', out.stdout, out.complete),
      output('stderr', out.stderr, out.complete),
      h('h2', {}, 'Attempts of this fire'),
      attempts ? runsTable(attempts.runs, { current: run.id }) : h('p', { class: 'muted' }, 'Not available.'),
    );
  };
  const fail = (error) => replace(main, h('h1', {}, `Run ${id}`), h('p', { class: 'load-error', role: 'alert' }, error.message));
  const refresh = throttle(() => render().catch(fail), 300);
  render().catch(fail);
  const onEvent = (event) => {
    if (event.stage === 'resync' || event.run_id === id || (event.job === job && event.scheduled_for === fire)) refresh();
  };
  return { onEvent, stop: () => (alive = false) };
}
