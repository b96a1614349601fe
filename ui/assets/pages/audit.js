// The audit trail: newest first, filtered by actor, action and target (exact values, as the API
// filters), paged forward by the API's cursor and back through the cursors already seen. The
// filters live in the address.
import { $, h, api, time, bindForm, fillTable, row, pager, readQuery, writeQuery } from '/assets/app.js';

const SIZE = 50;
const FILTERS = ['actorId', 'action', 'targetType', 'targetId'];

const form = $('#audit-filters');
const actorSelect = $('#f-actorId');
const query = readQuery();
let filters = Object.fromEntries(FILTERS.map((name) => [name, query[name]?.[0] || '']));
/** Who is who: actor id → email (the tenant's users, and every actor seen in a page). */
const actors = new Map();
const actions = new Set();
const targetTypes = new Set();

/** The cursor of the page shown ('' for the first) and of the pages before it. */
let cursor = '';
let earlier = [];

function fillForm() {
  for (const name of FILTERS) form.elements.namedItem(name).value = filters[name];
}

function options() {
  // What the select shows stays (a choice not applied yet), else the filter applied.
  const chosen = actorSelect.value || filters.actorId;
  if (chosen && !actors.has(chosen)) actors.set(chosen, chosen);
  const sorted = [...actors].sort((a, b) => a[1].localeCompare(b[1]));
  actorSelect.replaceChildren(h('option', { value: '' }, 'Anyone'),
    ...sorted.map(([id, email]) => h('option', { value: id }, email)));
  actorSelect.value = chosen;
  $('#actions').replaceChildren(...[...actions].sort().map((value) => h('option', { value })));
  $('#target-types').replaceChildren(...[...targetTypes].sort().map((value) => h('option', { value })));
}

async function users() {
  try {
    for (let page = 0; page < 10; page += 1) {
      const result = await api(`/api/users?page=${page}&size=100`);
      for (const user of result.items) actors.set(user.id, user.email);
      if (!result.hasNext) break;
    }
  } catch {
    // The actor list is a convenience: the trail itself still loads, and its actors are added.
  }
  options();
}

function statusBadge(status) {
  const kind = status >= 400 ? 'FAILED' : 'SUCCESS';
  return h('span', { class: `badge ${kind}` }, String(status));
}

function change(record) {
  if (record.before === undefined && record.after === undefined) return h('span', { class: 'muted' }, '—');
  return h('details', {},
    h('summary', {}, record.before === undefined ? 'Created' : record.after === undefined ? 'Removed' : 'Before and after'),
    record.before !== undefined ? [h('h3', {}, 'Before'), h('pre', {}, JSON.stringify(record.before, null, 2))] : '',
    record.after !== undefined ? [h('h3', {}, 'After'), h('pre', {}, JSON.stringify(record.after, null, 2))] : '');
}

/** A value in the table that, clicked, filters the trail by it. */
function filterButton(text, label, name, value) {
  return h('button', {
    type: 'button', class: 'link', title: `Show only ${label}`, 'aria-label': `${text}: show only ${label}`,
    onclick: () => { filters[name] = value; fillForm(); list.first(); },
  }, text);
}

function render(connection) {
  $('#list-error').textContent = '';
  const rows = connection.items.map((record) => {
    actors.set(record.actorId, record.actorEmail || record.actorId);
    actions.add(record.action);
    if (record.targetType) targetTypes.add(record.targetType);
    return row([
      time(record.at),
      record.actorEmail ? filterButton(record.actorEmail, `the changes of ${record.actorEmail}`, 'actorId', record.actorId) : h('code', {}, record.actorId),
      h('td', {}, h('code', {}, record.action)),
      h('td', {},
        record.targetType ? filterButton(record.targetType, `changes to ${record.targetType} objects`, 'targetType', record.targetType) : h('span', { class: 'muted' }, '—'),
        record.targetId ? h('div', { class: 'small' }, h('code', {}, record.targetId)) : ''),
      statusBadge(record.status),
      change(record),
    ], { 'data-record-id': record.id });
  });
  fillTable($('#audit'), rows, $('#no-records'));
  $('#audit-status').textContent = `${rows.length} changes shown${connection.pageInfo.hasNextPage ? ', more on the next page' : ''}.`;
  options();
}

// The API pages forward with `cursor` (its `nextCursor`); pager() gets a Relay-shaped page.
const list = pager($('nav.pager'), async (page) => {
  let wanted;
  let before;
  if (page.after) { wanted = page.after; before = [...earlier, cursor]; }
  else if (page.before) { wanted = earlier.at(-1) || ''; before = earlier.slice(0, -1); }
  else { wanted = ''; before = []; }
  writeQuery(filters);
  const params = new URLSearchParams({ limit: String(SIZE) });
  for (const name of FILTERS) if (filters[name]) params.set(name, filters[name]);
  if (wanted) params.set('cursor', wanted);
  try {
    const answer = await api(`/api/audit?${params}`);
    cursor = wanted;
    earlier = before;
    return {
      items: answer.items,
      pageInfo: { hasNextPage: Boolean(answer.nextCursor), hasPreviousPage: earlier.length > 0 || cursor !== '', startCursor: cursor, endCursor: answer.nextCursor },
    };
  } catch (error) {
    $('#list-error').textContent = `The audit trail could not load: ${error.message}`;
    throw error;
  }
}, render, SIZE);

bindForm(form, async (values) => {
  filters = Object.fromEntries(FILTERS.map((name) => [name, values[name] || '']));
  await list.first();
}, { reset: false });

$('#clear-filters').addEventListener('click', () => {
  filters = Object.fromEntries(FILTERS.map((name) => [name, '']));
  fillForm();
  list.first();
});

fillForm();
options();
users();
list.first();
