// Devices: facet filters with counts, search and paging; the view lives in the address.
import { $, h, gql, badge, time, fillTable, row, pager, readQuery, writeQuery, every } from '/assets/app.js';

const FIELDS = `machineId hostname displayName status osType osVersion ip agentVersion lastSeen organization { name }`;
const LIST = `query Devices($filter: DeviceFilterInput, $search: String, $first: Int, $after: String, $last: Int, $before: String) {
  devices(filter: $filter, search: $search, first: $first, after: $after, last: $last, before: $before) {
    edges { node { ${FIELDS} } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    filteredCount
  }
  deviceFilters(filter: $filter, search: $search) {
    statuses { value label count } osTypes { value label count } deviceTypes { value label count }
    organizationIds { value label count } tagKeys { key value count }
  }
}`;

/** Each facet: its address parameter, the filter field, its fieldset, the options' source. */
const FACETS = [
  { param: 'status', field: 'statuses', set: '#f-status', options: (f) => f.statuses },
  { param: 'os', field: 'osTypes', set: '#f-os', options: (f) => f.osTypes },
  { param: 'type', field: 'deviceTypes', set: '#f-type', options: (f) => f.deviceTypes },
  { param: 'customer', field: 'organizationIds', set: '#f-customer', options: (f) => f.organizationIds },
  {
    param: 'tag', field: 'tagValues', set: '#f-tag',
    options: (f) => f.tagKeys.map((tag) => ({ value: `${tag.key}:${tag.value}`, label: `${tag.key}: ${tag.value}`, count: tag.count })),
  },
];

const query = readQuery();
const chosen = Object.fromEntries(FACETS.map((facet) => [facet.param, new Set(query[facet.param] || [])]));
const search = $('#search');
search.value = query.q?.[0] || '';
let lastPage = { first: 50 };

function filter() {
  const value = {};
  for (const facet of FACETS) if (chosen[facet.param].size) value[facet.field] = [...chosen[facet.param]];
  return value;
}

function facetOptions(facets) {
  for (const facet of FACETS) {
    const options = facet.options(facets);
    // A chosen value stays visible (with 0) even when nothing in the filtered list has it.
    for (const value of chosen[facet.param]) {
      if (!options.some((option) => option.value === value)) options.push({ value, label: value, count: 0 });
    }
    const set = $(facet.set);
    const legend = set.querySelector('legend');
    set.replaceChildren(legend, ...options.map((option) => h('label', { class: 'inline' },
      h('input', {
        type: 'checkbox', name: facet.param, value: option.value, checked: chosen[facet.param].has(option.value),
        onchange: (event) => {
          if (event.target.checked) chosen[facet.param].add(option.value);
          else chosen[facet.param].delete(option.value);
          list.first();
        },
      }),
      h('span', {}, option.label || option.value), h('span', { class: 'count' }, `(${option.count})`))));
    set.hidden = options.length === 0;
  }
}

function render(connection) {
  $('#list-error').textContent = '';
  $('#device-count').textContent = `(${connection.filteredCount})`;
  const rows = connection.edges.map(({ node }) => row([
    h('a', { href: `/devices/${encodeURIComponent(node.machineId)}` }, node.displayName || node.hostname || node.machineId),
    badge(node.status),
    [node.osType, node.osVersion].filter(Boolean).join(' ') || '—',
    node.organization?.name || '—',
    node.ip || '—',
    node.agentVersion || '—',
    time(node.lastSeen),
  ], { 'data-machine-id': node.machineId }));
  fillTable($('#devices'), rows, $('#no-devices'));
  // When the first page of devices is in the table (tests/load/console.sh reports it).
  if (!performance.getEntriesByName('devices-shown').length) performance.mark('devices-shown');
}

const list = pager($('nav.pager'), async (page) => {
  lastPage = page;
  const text = search.value.trim();
  writeQuery({ q: text, ...Object.fromEntries(FACETS.map((facet) => [facet.param, [...chosen[facet.param]]])) });
  try {
    const data = await gql(LIST, { ...page, filter: filter(), search: text || null });
    facetOptions(data.deviceFilters);
    return data.devices;
  } catch (error) {
    $('#list-error').textContent = `The devices could not load: ${error.message}`;
    throw error;
  }
}, render, 50);

let typing = null;
search.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(() => list.first(), 250); });
$('#device-search').addEventListener('submit', (event) => { event.preventDefault(); list.first(); });
$('#clear-filters').addEventListener('click', () => {
  for (const facet of FACETS) chosen[facet.param].clear();
  search.value = '';
  list.first();
});

list.first();
// Status and last-seen change as agents come and go: the page shown is refreshed in place.
every(20, () => list.go(lastPage));
