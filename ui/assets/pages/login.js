// Sign-in, email first: the email finds the tenant (or lets the user choose one), then the
// tenant's own sign-in page takes the password and sends the browser back to `next`.
import { $, h, bindForm, ApiError } from '/assets/app.js';

const TENANT_KEY = 'openframe.tenant';
const params = new URLSearchParams(location.search);
const status = $('#login-status');
const form = $('#login-form');

/** Only a path of this appliance: anything else would make the sign-in an open redirect. */
function safeNext(value) {
  return value && value.startsWith('/') && !value.startsWith('//') && !value.includes('\\') ? value : '/';
}
const next = safeNext(params.get('next'));

function signIn(tenant, email) {
  localStorage.setItem(TENANT_KEY, tenant);
  const query = new URLSearchParams({ tenantId: tenant, redirectTo: next, loginHint: email });
  location.assign(`/oauth/login?${query}`);
}

async function resume() {
  const tenant = localStorage.getItem(TENANT_KEY);
  if (params.has('signedOut')) {
    status.textContent = 'You are signed out.';
    return;
  }
  if (!tenant) return;
  // An expired access token with a live refresh token: back to the page without typing. Once
  // per few seconds only: if the page sends us back at once, the session is not enough for it.
  const last = Number(sessionStorage.getItem('openframe.resumed') || 0);
  if (Date.now() - last < 10_000) {
    status.textContent = 'Sign in again to continue.';
    return;
  }
  sessionStorage.setItem('openframe.resumed', String(Date.now()));
  status.textContent = 'Resuming your session…';
  const response = await fetch(`/oauth/refresh?tenantId=${encodeURIComponent(tenant)}`, {
    method: 'POST', credentials: 'same-origin',
  }).catch(() => null);
  if (response?.ok) {
    location.replace(next);
    return;
  }
  status.textContent = params.has('next') ? 'Your session ended. Sign in again to continue where you were.' : '';
}

bindForm(form, async (values) => {
  if (values.tenant) {
    signIn(values.tenant, values.email);
    return;
  }
  const response = await fetch(`/sas/tenant/discover?email=${encodeURIComponent(values.email || '')}`, {
    credentials: 'same-origin', headers: { Accept: 'application/json' },
  });
  const found = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, found.code || 'invalid_input', `email: ${found.message || 'this email cannot be used'}`);
  }
  const tenants = found.tenant_ids || [];
  if (tenants.length === 0) {
    throw new ApiError(404, 'not_found', 'email: no account uses this email. Ask an administrator of your MSP for an invitation.');
  }
  if (tenants.length === 1) {
    signIn(tenants[0], found.email);
    return;
  }
  const options = $('#tenant-options');
  options.replaceChildren(...tenants.map((tenant, index) => h('label', { class: 'inline' },
    h('input', { type: 'radio', name: 'tenant', value: tenant, checked: index === 0 }), tenant)));
  $('#tenant-choice').hidden = false;
  status.textContent = 'Choose the tenant to sign in to, then continue.';
}, { reset: false });

resume();
