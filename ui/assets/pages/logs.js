// The unified log: filters and full-text search (kept in the address), paging, a details
// drawer, and a live tail over the `logStream` subscription.
import { $, $$, h, gql, badge, time, bindForm, fillTable, row, pager, readQuery, writeQuery, subscribe, copy } from '/assets/app.js';

const FIELDS = 'id toolEventId eventType ingestDay toolType severity deviceId hostname organizationId organizationName summary timestamp';
const LIST = `query Logs($filter: LogFilterInput, $search: String, $first: Int, $after: String, $last: Int, $before: String) {
  logs(filter: $filter, search: $search, first: $first, after: $after, last: $last, before: $before) {
    edges { node { ${FIELDS} } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    filteredCount
  }
}`;
const FACETS = `query LogFacets { logFilters { toolTypes eventTypes organizations { id name } } }`;
const DETAILS = `query Details($ingestDay: String!, $toolType: String!, $eventType: String!, $timestamp: String!, $toolEventId: String!) {
  logDetails(ingestDay: $ingestDay, toolType: $toolType, eventType: $eventType, timestamp: $timestamp, toolEventId: $toolEventId) {
    ${FIELDS} userId message details
  }
}`;
const LIVE = `subscription Live($filter: LogStreamFilter) { logStream(filter: $filter) { ${FIELDS} } }`;

const form = $('#log-filters');
const table = $('#logs');
const drawer = $('#log-drawer');
let device = null;
let stopLive = null;
let lastDetails = '';

/** `2026-11-28T02:00` (the input's local time) ↔ RFC 3339. */
const toIso = (local) => (local ? new Date(local).toISOString() : null);
function toLocal(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function fromAddress() {
  const query = readQuery();
  $('#search').value = query.q?.[0] || '';
  for (const box of $$('input[name="severity"]')) box.checked = (query.severity || []).includes(box.value);
  $('#f-from').value = query.from ? toLocal(query.from[0]) : '';
  $('#f-to').value = query.to ? toLocal(query.to[0]) : '';
  device = query.device?.[0] || null;
  $('#device-filter').hidden = !device;
  $('#device-id').textContent = device || '';
  return query;
}

function selected() {
  return {
    q: $('#search').value.trim(),
    severity: $$('input[name="severity"]:checked').map((box) => box.value),
    tool: $('#f-tool').value,
    eventType: $('#f-type').value,
    customer: $('#f-customer').value,
    from: toIso($('#f-from').value),
    to: toIso($('#f-to').value),
    device,
  };
}

function filterOf(view) {
  const filter = {};
  if (view.severity.length) filter.severities = view.severity;
  if (view.tool) filter.toolTypes = [view.tool];
  if (view.eventType) filter.eventTypes = [view.eventType];
  if (view.customer) filter.organizationIds = [view.customer];
  if (view.device) filter.deviceId = view.device;
  if (view.from) filter.timestampFrom = view.from;
  if (view.to) filter.timestampTo = view.to;
  return filter;
}

function logRow(node) {
  const key = [node.ingestDay, node.toolType, node.eventType, node.timestamp, node.toolEventId].join('|');
  return row([
    time(node.timestamp), badge(node.severity), node.toolType, node.eventType,
    node.deviceId ? h('a', { href: `/devices/${encodeURIComponent(node.deviceId)}` }, node.hostname || node.deviceId) : (node.hostname || '—'),
    node.organizationName || '—',
    h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => openDetails(key) }, node.summary || node.eventType)),
  ], { 'data-key': key });
}

async function openDetails(key) {
  const [ingestDay, toolType, eventType, timestamp, toolEventId] = key.split('|');
  $('#drawer-state').textContent = 'Loading…';
  for (const id of ['#drawer-props', '#drawer-message', '#drawer-details']) $(id).replaceChildren();
  if (!drawer.open) drawer.showModal();
  try {
    const data = await gql(DETAILS, { ingestDay, toolType, eventType, timestamp, toolEventId });
    const entry = data.logDetails;
    if (!entry) {
      $('#drawer-state').textContent = 'This entry is no longer in the log (retention may have removed it).';
      return;
    }
    $('#drawer-state').textContent = '';
    $('#drawer-title').textContent = entry.summary || entry.eventType;
    const props = [['Time', time(entry.timestamp)], ['Severity', badge(entry.severity)], ['Tool', entry.toolType],
      ['Event type', entry.eventType], ['Device', entry.hostname || entry.deviceId], ['Customer', entry.organizationName],
      ['User', entry.userId], ['Event id', h('code', {}, entry.toolEventId)]];
    $('#drawer-props').replaceChildren(...props.filter(([, v]) => v).flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
    $('#drawer-message').textContent = entry.message || '—';
    let details = entry.details || '';
    try { details = JSON.stringify(JSON.parse(details), null, 2); } catch { /* shown as it came */ }
    lastDetails = details;
    $('#drawer-details').textContent = details || '—';
  } catch (error) {
    $('#drawer-state').textContent = `The details could not load: ${error.message}`;
  }
}

const list = pager($('nav.pager'), async (page) => {
  const view = selected();
  writeQuery(view);
  const data = await gql(LIST, { ...page, filter: filterOf(view), search: view.q || null });
  return data.logs;
}, (connection) => {
  $('#log-count').textContent = `(${connection.filteredCount})`;
  fillTable(table, connection.edges.map(({ node }) => logRow(node)), $('#no-logs'));
}, 50);

async function facets(query) {
  const data = await gql(FACETS);
  const fill = (select, values, chosen) => {
    const first = select.options[0];
    select.replaceChildren(first, ...values.map(([value, label]) => h('option', { value, selected: value === chosen }, label)));
  };
  fill($('#f-tool'), data.logFilters.toolTypes.map((v) => [v, v]), query.tool?.[0]);
  fill($('#f-type'), data.logFilters.eventTypes.map((v) => [v, v]), query.eventType?.[0]);
  fill($('#f-customer'), data.logFilters.organizations.map((o) => [o.id, o.name]), query.customer?.[0]);
}

function live(on) {
  const button = $('#live');
  button.setAttribute('aria-pressed', String(on));
  if (!on) {
    stopLive?.();
    stopLive = null;
    $('#live-state').textContent = '';
    return;
  }
  const view = selected();
  const filter = filterOf(view);
  delete filter.timestampFrom;
  delete filter.timestampTo;
  const words = view.q.toLowerCase();
  stopLive = subscribe(LIVE, { filter }, (data) => {
    const node = data.logStream;
    const text = [node.summary, node.hostname, node.organizationName, node.eventType].join(' ').toLowerCase();
    if (words && !text.includes(words)) return;
    const fresh = logRow(node);
    fresh.classList.add('fresh');
    table.tBodies[0].prepend(fresh);
    table.hidden = false;
    $('#no-logs').hidden = true;
    while (table.tBodies[0].rows.length > 200) table.tBodies[0].lastElementChild.remove();
  }, (state, detail) => {
    $('#live-state').textContent = state === 'live' ? 'Live: new entries appear at the top.'
      : state === 'reconnecting' ? `Reconnecting (${detail})…` : (detail ? `Live tail stopped: ${detail}` : '');
    if (state === 'stopped' && detail) button.setAttribute('aria-pressed', 'false');
  });
}

bindForm(form, async (values) => {
  if (values.from && values.to && new Date(values.from) > new Date(values.to)) {
    throw new Error('to: must be after From');
  }
  await list.first();
  if (stopLive) { live(false); live(true); }
}, { reset: false });

$('#clear-filters').addEventListener('click', () => {
  form.reset();
  device = null;
  $('#device-filter').hidden = true;
  list.first();
});
$('#all-devices').addEventListener('click', () => { device = null; $('#device-filter').hidden = true; list.first(); });
$('#live').addEventListener('click', () => live($('#live').getAttribute('aria-pressed') !== 'true'));
$('#close-drawer').addEventListener('click', () => drawer.close());
$('#copy-details').addEventListener('click', () => copy(lastDetails));

const query = fromAddress();
facets(query).catch(() => {}).finally(() => list.first());
if (query.open?.[0]) openDetails(query.open[0]);
