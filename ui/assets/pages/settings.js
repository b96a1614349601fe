// Settings: the signed-in account, the single sign-on providers (read-only, with an on/off
// toggle), and links to the other settings pages.
import { $, h, api, badge, fillTable, row } from '/assets/app.js';

/** Every provider known this visit, by slug: the enabled ones, the named ones set up, and any
 *  turned off here (`/api/sso/providers` lists only the enabled). */
const providers = new Map();
/** The providers that can be set up by name (`google`, `microsoft`), from the API. */
let named = [];

async function account() {
  try {
    const me = await api('/api/me');
    const user = me.user;
    const entries = [
      ['Name', user.displayName], ['Email', user.email], ['Roles', user.roles.join(', ')],
      ['Tenant', h('code', {}, user.tenantId)], ['User id', h('code', {}, user.id)],
    ];
    $('#account').replaceChildren(...entries.flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
    $('#account-error').textContent = '';
  } catch (error) {
    $('#account-error').textContent = `Your account could not load: ${error.message}`;
  } finally {
    $('#account').removeAttribute('aria-busy');
  }
}

async function toggle(config, button) {
  const turningOff = config.enabled;
  if (turningOff && !confirm(`Turn off ${config.displayName}? Its users can no longer sign in with it until it is turned on again.`)) return;
  button.disabled = true;
  try {
    const updated = await api(`/api/sso/${encodeURIComponent(config.provider)}/toggle`, { method: 'PATCH' });
    providers.set(updated.provider, updated);
    $('#sso-error').textContent = '';
    const message = `${updated.displayName} is ${updated.enabled ? 'on' : 'off'}.`;
    $('#sso-status').textContent = message;
    render();
  } catch (error) {
    $('#sso-error').textContent = `${config.displayName} could not be turned ${turningOff ? 'off' : 'on'}: ${error.message}`;
    button.disabled = false;
  }
}

function render() {
  const list = [...providers.values()].sort((a, b) => a.displayName.localeCompare(b.displayName));
  const rows = list.map((config) => row([
    h('td', {}, h('strong', {}, config.displayName), h('div', {}, h('code', { class: 'small' }, config.provider))),
    h('td', {}, h('code', { class: 'small' }, config.issuer)),
    h('td', {}, h('code', { class: 'small' }, config.clientId), config.hasClientSecret ? '' : h('div', { class: 'error small' }, 'No client secret')),
    config.allowedDomains.length ? config.allowedDomains.join(', ') : h('span', { class: 'muted' }, 'Any'),
    config.autoProvisionUsers ? 'Created at first sign-in' : 'Must be invited',
    badge(config.enabled ? 'ENABLED' : 'DISABLED'),
    h('td', { class: 'row-actions' },
      h('button', {
        type: 'button', class: config.enabled ? 'danger' : 'secondary',
        'aria-label': `${config.enabled ? 'Turn off' : 'Turn on'} ${config.displayName}`,
        onclick: (event) => toggle(config, event.currentTarget),
      }, config.enabled ? 'Turn off' : 'Turn on')),
  ], { 'data-provider': config.provider }));
  fillTable($('#sso'), rows, $('#no-sso'));
  $('#available').replaceChildren(...named.map((option) => h('li', {},
    option.displayName, ' ', h('code', {}, option.provider),
    providers.has(option.provider) ? h('span', { class: 'muted' }, ' — set up') : h('span', { class: 'muted' }, ' — not set up'))),
  h('li', {}, 'Any other OpenID Connect provider, under a name of your choice, with its issuer URL'));
}

async function sso() {
  try {
    const [enabled, available] = await Promise.all([api('/api/sso/providers'), api('/api/sso/providers/available')]);
    named = available.filter((option) => /^[a-z0-9-]+$/.test(option.provider));
    for (const config of enabled) providers.set(config.provider, config);
    // A named provider that is set up but off is not in the enabled list: ask for it.
    await Promise.all(named.filter((option) => !providers.has(option.provider)).map(async (option) => {
      try {
        const config = await api(`/api/sso/${encodeURIComponent(option.provider)}`);
        providers.set(config.provider, config);
      } catch (error) {
        if (error.status !== 404) throw error;
      }
    }));
    $('#sso-error').textContent = '';
  } catch (error) {
    $('#sso-error').textContent = `The sign-on providers could not load: ${error.message}`;
  }
  render();
}

account();
sso();
