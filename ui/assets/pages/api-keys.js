// API keys: create (the full key shown once, with a copy button), enable/disable, regenerate,
// delete.
import { $, h, api, badge, time, bindForm, fillTable, row, copy, toast } from '/assets/app.js';

let fullKey = '';

function reveal(key) {
  fullKey = key;
  $('#full-key').textContent = key;
  $('#new-key').hidden = false;
  $('#copy-key').focus();
}

async function act(label, call) {
  try {
    await call();
    toast(label);
    await load();
  } catch (error) {
    $('#list-error').textContent = error.message;
  }
}

async function load() {
  const keys = await api('/api/api-keys');
  $('#list-error').textContent = '';
  const rows = keys.map((key) => row([
    h('strong', {}, key.name), h('code', {}, key.id), key.scopes.join(', '),
    badge(key.enabled ? 'ACTIVE' : 'DISABLED'),
    `${key.totalRequests} (${key.failedRequests} failed)`, time(key.lastUsed), time(key.expiresAt),
    h('td', {},
      h('button', {
        type: 'button', class: 'secondary', 'aria-label': `${key.enabled ? 'Disable' : 'Enable'} ${key.name}`,
        onclick: () => act(`${key.name} is ${key.enabled ? 'disabled' : 'enabled'}.`,
          () => api(`/api/api-keys/${encodeURIComponent(key.id)}`, { method: 'PUT', body: { enabled: !key.enabled } })),
      }, key.enabled ? 'Disable' : 'Enable'), ' ',
      h('button', {
        type: 'button', class: 'secondary', 'aria-label': `Regenerate ${key.name}`,
        onclick: () => {
          if (!confirm(`Regenerate ${key.name}? Callers using its current secret stop working at once.`)) return;
          act(`${key.name} has a new secret.`, async () => {
            const made = await api(`/api/api-keys/${encodeURIComponent(key.id)}/regenerate`, { method: 'POST' });
            reveal(made.fullKey);
          });
        },
      }, 'Regenerate'), ' ',
      h('button', {
        type: 'button', class: 'danger', 'aria-label': `Delete ${key.name}`,
        onclick: () => {
          if (!confirm(`Delete ${key.name}? Callers using it stop working at once.`)) return;
          act(`${key.name} is deleted.`, () => api(`/api/api-keys/${encodeURIComponent(key.id)}`, { method: 'DELETE' }));
        },
      }, 'Delete')),
  ], { 'data-key-id': key.id }));
  fillTable($('#keys'), rows, $('#no-keys'));
}

bindForm($('#key-form'), async (values) => {
  const body = { name: values.name, description: values.description || '' };
  if (values.scopes?.length) body.scopes = values.scopes;
  if (values.expiresAt) body.expiresAt = new Date(`${values.expiresAt}T23:59:59`).toISOString();
  if (values.perMinute) body.rateLimits = { perMinute: Number(values.perMinute) };
  const made = await api('/api/api-keys', { method: 'POST', body });
  reveal(made.fullKey);
  toast(`${made.apiKey.name} is created.`);
  await load();
});

$('#copy-key').addEventListener('click', () => copy(fullKey));
load().catch((error) => { $('#list-error').textContent = `The keys could not load: ${error.message}`; });
