// The agent install command, with the tenant's registration secret and a chosen customer.
import { $, h, api, gql, copy, time, toast } from '/assets/app.js';

const CUSTOMERS = `query { organizations(first: 100) { edges { node { organizationId name } } } }`;
let secret = null;

function command() {
  const customer = $('#agent-customer').value;
  return secret.installCommand.replace('<organizationId>', customer || '<organizationId>');
}

function show(value) {
  secret = value;
  $('#secret').textContent = value.secret;
  $('#secret-created').replaceChildren('Created ', time(value.createdAt));
  $('#install-command').textContent = command();
}

async function load() {
  try {
    const [value, data] = await Promise.all([api('/api/agents/registration-secret'), gql(CUSTOMERS)]);
    const select = $('#agent-customer');
    select.append(...data.organizations.edges.map(({ node }) => h('option', { value: node.organizationId }, node.name)));
    if (data.organizations.edges.length === 1) select.value = data.organizations.edges[0].node.organizationId;
    show(value);
  } catch (error) {
    $('#agents-error').textContent = `The install command could not load: ${error.message}`;
  }
}

$('#agent-customer').addEventListener('change', () => { if (secret) $('#install-command').textContent = command(); });
$('#copy-command').addEventListener('click', () => secret && copy(command()));
$('#copy-secret').addEventListener('click', () => secret && copy(secret.secret));
$('#rotate').addEventListener('click', async (event) => {
  if (!confirm('Rotate the registration secret? Install commands with the old secret stop working.')) return;
  event.target.disabled = true;
  try {
    show(await api('/api/agents/registration-secret/rotate', { method: 'POST' }));
    toast('The registration secret is rotated.');
  } catch (error) {
    $('#agents-error').textContent = error.message;
  } finally {
    event.target.disabled = false;
  }
});

load();
