// Scripts: the library (search, status, create, archive and unarchive), a script's recent runs,
// and the schedules. The search, status and chosen script live in the address.
import { $, h, gql, badge, time, bindForm, fillTable, row, pager, readQuery, writeQuery, every, toast } from '/assets/app.js';

const PAGE_INFO = 'pageInfo { hasNextPage hasPreviousPage startCursor endCursor } filteredCount';
const LIST = `query Scripts($first: Int, $after: String, $last: Int, $before: String, $search: String, $filter: ScriptFilterInput) {
  scripts(first: $first, after: $after, last: $last, before: $before, search: $search, filter: $filter) {
    edges { node { id scriptId name description shell supportedPlatforms status updatedAt } }
    ${PAGE_INFO}
  }
}`;
const RUNS = `query Runs($scriptId: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  script(id: $scriptId) { name }
  scriptExecutions(scriptId: $scriptId, first: $first, after: $after, last: $last, before: $before) {
    edges { node { id executionId machineId machine { hostname displayName } source status dispatchedAt finishedAt exitCode timedOut error } }
    ${PAGE_INFO}
  }
}`;
const SCHEDULES = `query Schedules($first: Int, $after: String, $last: Int, $before: String) {
  scriptSchedules(first: $first, after: $after, last: $last, before: $before) {
    edges { node { id scheduleId name trigger repeat startAt nextRunAt lastRunAt status deviceCount } }
    ${PAGE_INFO}
  }
}`;
const CREATE = `mutation CreateScript($input: CreateScriptInput!) { createScript(input: $input) { id scriptId name } }`;
const ARCHIVE = `mutation Archive($id: ID!) { archiveScript(id: $id) { id status } }`;
const UNARCHIVE = `mutation Unarchive($id: ID!) { unarchiveScript(id: $id) { id status } }`;

const SHELLS = { POWERSHELL: 'PowerShell', CMD: 'cmd', BASH: 'Bash', SHELL: 'sh', PYTHON: 'Python', NUSHELL: 'Nushell' };
const PLATFORMS = { WINDOWS: 'Windows', MAC_OS: 'macOS', LINUX: 'Linux' };
const STATUSES = { ACTIVE: ['ACTIVE'], ARCHIVED: ['ARCHIVED'], ALL: ['ACTIVE', 'ARCHIVED'] };
const UNFINISHED = new Set(['PENDING', 'DISPATCHED']);

const search = $('#search');
const status = $('#status-filter');
const dialog = $('#script-dialog');
const form = $('#script-form');
const query = readQuery();
search.value = query.q?.[0] || '';
if (STATUSES[query.status?.[0]]) status.value = query.status[0];

/** The script whose runs are shown: {scriptId, name}, or null. */
let selected = query.script?.[0] ? { scriptId: query.script[0], name: '' } : null;
let scriptsPage = { first: 25 };
let runsPage = { first: 20 };

function remember() {
  writeQuery({ q: search.value.trim(), status: status.value === 'ACTIVE' ? '' : status.value, script: selected?.scriptId });
}

async function setStatus(script, archive) {
  try {
    await gql(archive ? ARCHIVE : UNARCHIVE, { id: script.id });
    toast(archive ? `${script.name} is archived; it can no longer run.` : `${script.name} is active again.`);
    await scripts.go(scriptsPage);
  } catch (error) {
    $('#list-error').textContent = `${script.name} could not be ${archive ? 'archived' : 'made active'}: ${error.message}`;
  }
}

function renderScripts(connection) {
  $('#list-error').textContent = '';
  $('#script-count').textContent = `(${connection.filteredCount})`;
  const rows = connection.edges.map(({ node }) => {
    const archived = node.status === 'ARCHIVED';
    return row([
      h('td', {},
        h('button', {
          type: 'button', class: 'link', 'aria-controls': 'runs', 'aria-label': `Show the runs of ${node.name}`,
          onclick: () => select(node),
        }, node.name),
        node.description ? h('div', { class: 'muted small' }, node.description) : ''),
      SHELLS[node.shell] || node.shell,
      node.supportedPlatforms.map((platform) => PLATFORMS[platform] || platform).join(', ') || 'Any',
      badge(node.status),
      time(node.updatedAt),
      h('td', { class: 'row-actions' },
        h('button', {
          type: 'button', class: 'secondary', 'aria-label': `${archived ? 'Unarchive' : 'Archive'} ${node.name}`,
          onclick: () => setStatus(node, !archived),
        }, archived ? 'Unarchive' : 'Archive')),
    ], { 'data-script-id': node.scriptId, 'aria-current': selected?.scriptId === node.scriptId ? 'true' : null });
  });
  fillTable($('#scripts'), rows, $('#no-scripts'));
}

const scripts = pager($('#scripts-pager'), async (page) => {
  scriptsPage = page;
  remember();
  const text = search.value.trim();
  try {
    const data = await gql(LIST, { ...page, search: text || null, filter: { statuses: STATUSES[status.value] } });
    return data.scripts;
  } catch (error) {
    $('#list-error').textContent = `The scripts could not load: ${error.message}`;
    throw error;
  }
}, renderScripts, 25);

// --- A script's runs. ---

function machineName(node) {
  return node.machine?.displayName || node.machine?.hostname || node.machineId;
}

function renderRuns(connection) {
  $('#runs-error').textContent = '';
  const running = connection.edges.filter(({ node }) => UNFINISHED.has(node.status)).length;
  const summary = `${connection.filteredCount} runs in all${running ? `, ${running} on this page still running` : ''}.`;
  // Set only when it changed, so the refresh every few seconds is not read out each time.
  if ($('#runs-status').textContent !== summary) $('#runs-status').textContent = summary;
  const rows = connection.edges.map(({ node }) => row([
    h('td', {}, badge(node.status), node.timedOut ? h('span', { class: 'muted small' }, ' timed out') : '',
      node.error ? h('div', { class: 'error' }, node.error) : ''),
    node.machine ? h('a', { href: `/devices/${encodeURIComponent(node.machineId)}` }, machineName(node)) : h('code', {}, node.machineId),
    node.source.toLowerCase().replace('_', ' '),
    time(node.dispatchedAt),
    time(node.finishedAt),
    node.exitCode === null || node.exitCode === undefined ? h('span', { class: 'muted' }, '—') : String(node.exitCode),
  ], { 'data-execution-id': node.executionId }));
  fillTable($('#executions'), rows, $('#no-runs'));
}

const runs = pager($('#runs-pager'), async (page) => {
  runsPage = page;
  try {
    const data = await gql(RUNS, { ...page, scriptId: selected.scriptId });
    selected.name = data.script.name;
    $('#runs-heading').textContent = `Recent runs of ${data.script.name}`;
    return data.scriptExecutions;
  } catch (error) {
    $('#runs-error').textContent = `The runs could not load: ${error.message}`;
    throw error;
  }
}, renderRuns, 20);

function select(script) {
  selected = { scriptId: script.scriptId, name: script.name };
  remember();
  for (const tr of $('#scripts').tBodies[0].rows) {
    if (tr.dataset.scriptId === script.scriptId) tr.setAttribute('aria-current', 'true');
    else tr.removeAttribute('aria-current');
  }
  $('#runs-heading').textContent = `Recent runs of ${script.name}`;
  $('#runs').hidden = false;
  $('#runs-status').textContent = 'Loading the runs…';
  runs.first().then(() => $('#runs').scrollIntoView({ block: 'nearest' }));
}

// --- Schedules. ---

/** Seconds between firings, in words ("every 2 hours"). */
function interval(seconds) {
  if (!seconds) return '';
  if (seconds % 86400 === 0) return seconds === 86400 ? 'daily' : `every ${seconds / 86400} days`;
  if (seconds % 3600 === 0) return seconds === 3600 ? 'hourly' : `every ${seconds / 3600} hours`;
  return `every ${Math.round(seconds / 60)} minutes`;
}

function trigger(node) {
  if (node.trigger === 'DEVICE_ONLINE') return 'When a device comes online';
  const repeat = interval(node.repeat);
  return h('span', {}, repeat ? `Repeats ${repeat}, from ` : 'Once, at ', time(node.startAt));
}

function renderSchedules(connection) {
  $('#schedules-error').textContent = '';
  const rows = connection.edges.map(({ node }) => row([
    h('strong', {}, node.name),
    trigger(node),
    time(node.nextRunAt),
    time(node.lastRunAt),
    badge(node.status),
    String(node.deviceCount),
  ], { 'data-schedule-id': node.scheduleId }));
  fillTable($('#schedules'), rows, $('#no-schedules'));
}

const schedules = pager($('#schedules-pager'), async (page) => {
  try {
    const data = await gql(SCHEDULES, page);
    return data.scriptSchedules;
  } catch (error) {
    $('#schedules-error').textContent = `The schedules could not load: ${error.message}`;
    throw error;
  }
}, renderSchedules, 25);

// --- Creating a script. ---

function openDialog() {
  form.reset();
  for (const field of form.querySelectorAll('[aria-invalid="true"]')) field.removeAttribute('aria-invalid');
  for (const slot of form.querySelectorAll('.error')) slot.textContent = '';
  dialog.showModal();
  $('#script-name').focus();
}

bindForm(form, async (values) => {
  const input = {
    name: values.name,
    shell: values.shell,
    scriptBody: form.elements.namedItem('scriptBody').value, // as typed: indentation matters
    description: values.description ?? null,
  };
  if (values.supportedPlatforms?.length) input.supportedPlatforms = values.supportedPlatforms;
  if (values.defaultTimeoutSeconds !== undefined) input.defaultTimeoutSeconds = Number(values.defaultTimeoutSeconds);
  const data = await gql(CREATE, { input });
  dialog.close();
  toast(`${data.createScript.name} is created.`);
  if (status.value === 'ARCHIVED') status.value = 'ACTIVE';
  await scripts.first();
});

let typing = null;
search.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(() => scripts.first(), 250); });
$('#script-search').addEventListener('submit', (event) => { event.preventDefault(); scripts.first(); });
status.addEventListener('change', () => scripts.first());
$('#new-script').addEventListener('click', openDialog);
dialog.querySelector('[data-close]').addEventListener('click', () => dialog.close());

scripts.first();
schedules.first();
if (selected) {
  $('#runs').hidden = false;
  runs.first();
}
// Runs finish while the page is open: the runs shown are refreshed in place.
every(10, async () => {
  if (selected) await runs.go(runsPage);
});
