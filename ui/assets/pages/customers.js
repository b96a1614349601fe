// Customers (OpenFrame's organizations): list, search, create, edit, archive and restore.
import { $, h, api, gql, badge, bindForm, fillTable, row, pager, readQuery, writeQuery, toast } from '/assets/app.js';

const LIST = `query Customers($first: Int, $after: String, $last: Int, $before: String, $search: String, $status: String) {
  organizations(first: $first, after: $after, last: $last, before: $before, search: $search, filter: { status: $status }) {
    edges { node { organizationId name category websiteUrl numberOfEmployees notes status } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    filteredCount
  }
  deviceFilters { organizationIds { value count } }
}`;

const table = $('#customers');
const dialog = $('#customer-dialog');
const form = $('#customer-form');
const search = $('#search');
const archived = $('#show-archived');
const query = readQuery();
search.value = query.q?.[0] || '';
archived.checked = query.status?.[0] === 'ARCHIVED';

let deviceCounts = new Map();
const customers = new Map();

function open(customer) {
  form.reset();
  for (const slot of form.querySelectorAll('.error')) slot.textContent = '';
  $('#customer-dialog-title').textContent = customer ? `Edit ${customer.name}` : 'New customer';
  $('#customer-id').value = customer?.organizationId || '';
  for (const name of ['name', 'category', 'websiteUrl', 'numberOfEmployees', 'notes']) {
    form.elements.namedItem(name).value = customer?.[name] ?? '';
  }
  dialog.showModal();
  $('#customer-name').focus();
}

async function setStatus(customer, status) {
  try {
    await api(`/api/organizations/${encodeURIComponent(customer.organizationId)}/status`, { method: 'PATCH', body: { status } });
    toast(status === 'ARCHIVED' ? `${customer.name} is archived.` : `${customer.name} is active again.`);
    list.first();
  } catch (error) {
    $('#list-error').textContent = error.message;
  }
}

function render(connection) {
  $('#list-error').textContent = '';
  customers.clear();
  const rows = connection.edges.map(({ node }) => {
    customers.set(node.organizationId, node);
    const archive = node.status === 'ARCHIVED'
      ? h('button', { type: 'button', class: 'secondary', onclick: () => setStatus(node, 'ACTIVE') }, 'Restore')
      : h('button', { type: 'button', class: 'secondary', onclick: () => setStatus(node, 'ARCHIVED') }, 'Archive');
    return row([
      h('a', { href: `/devices?${new URLSearchParams({ customer: node.organizationId })}` }, node.name),
      node.category || '—',
      node.websiteUrl ? h('a', { href: node.websiteUrl, rel: 'noopener noreferrer', target: '_blank' }, node.websiteUrl) : '—',
      String(deviceCounts.get(node.organizationId) || 0),
      badge(node.status),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => open(node), 'aria-label': `Edit ${node.name}` }, 'Edit'), ' ', archive),
    ], { 'data-id': node.organizationId });
  });
  fillTable(table, rows, $('#no-customers'));
}

const list = pager($('nav.pager'), async (page) => {
  const text = search.value.trim();
  writeQuery({ q: text, status: archived.checked ? 'ARCHIVED' : '' });
  const data = await gql(LIST, { ...page, search: text || null, status: archived.checked ? 'ARCHIVED' : 'ACTIVE' });
  deviceCounts = new Map(data.deviceFilters.organizationIds.map((option) => [option.value, option.count]));
  return data.organizations;
}, render);

let typing = null;
search.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(() => list.first(), 250); });
$('#customer-search').addEventListener('submit', (event) => { event.preventDefault(); list.first(); });
archived.addEventListener('change', () => list.first());
$('#new-customer').addEventListener('click', () => open(null));
dialog.querySelector('[data-close]').addEventListener('click', () => dialog.close());

bindForm(form, async (values) => {
  const body = {
    name: values.name,
    category: values.category ?? null,
    websiteUrl: values.websiteUrl ?? null,
    numberOfEmployees: values.numberOfEmployees === undefined ? null : Number(values.numberOfEmployees),
    notes: values.notes ?? null,
  };
  const id = values.organizationId;
  const saved = id
    ? await api(`/api/organizations/${encodeURIComponent(id)}`, { method: 'PUT', body: { ...(await untouched(id)), ...body } })
    : await api('/api/organizations', { method: 'POST', body });
  dialog.close();
  toast(id ? `${saved.name} is saved.` : `${saved.name} is created.`);
  list.first();
}, { reset: false });

/** The fields this form does not edit, sent back as they are (a PUT replaces every field). */
async function untouched(id) {
  const current = await api(`/api/organizations/${encodeURIComponent(id)}`);
  const kept = {};
  for (const name of ['contactInformation', 'monthlyRevenue', 'contractStartDate', 'contractEndDate']) {
    if (current[name] !== undefined) kept[name] = current[name];
  }
  return kept;
}

list.first();
