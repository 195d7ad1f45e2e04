// The Latchkey demo PWA: passkey sign-in, an offline license, and a premium area that keeps
// working without a connection. All decisions come from latchkey.js.

import { createLatchkey } from './latchkey.js';

// This page is served from Latchkey itself, so the service's base path (e.g. /auth) is
// this module's own folder.
const HERE = new URL('./', import.meta.url);
const latchkey = createLatchkey({
  base: HERE.pathname,
  // Adding or removing a passkey, or signing out everywhere, may first ask for one.
  onStepUp: () => {
    say("Confirm it's you: use one of your passkeys for this account.");
    return true;
  },
});
const ENTITLEMENT = 'premium';

const $ = (id) => document.getElementById(id);
const ui = {
  main: $('main'),
  who: $('who'),
  activity: $('activity'),
  error: $('error'),
  verdict: $('verdict'),
  network: $('network'),
  expiry: $('expiry'),
  premiumContent: $('premium-content'),
  unlockResult: $('unlock-result'),
  premiumResult: $('premium-result'),
  form: $('auth-form'),
  username: $('username'),
  signedInActions: $('signed-in-actions'),
  passkeys: $('passkeys'),
  passkeyList: $('passkey-list'),
  recover: $('recover'),
  devices: $('devices'),
  deviceList: $('device-list'),
  recoveryCode: $('recovery-code'),
  recoveryCodes: $('recovery-codes'),
  recoveryCodeList: $('recovery-code-list'),
  recoveryCodesStatus: $('recovery-codes-status'),
};

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

let busy = false;
let signedIn = false;
let synced = false;
/** The last sync reached the service but not the status list (an ad blocker, a proxy). */
let statusFailed = false;
/** @type {AbortController | null} */
let autofill = null;
let verdictSeq = 0;
let verdictShown = false;

// ----------------------------------------------------------------------------------- views

async function showVerdict() {
  const seq = ++verdictSeq;
  const v = await latchkey.check(ENTITLEMENT);
  if (seq !== verdictSeq) return; // a newer check is on its way
  ui.verdict.textContent = v.ok ? 'Premium unlocked' : `Locked: ${v.reason}`;
  ui.verdict.classList.toggle('ok', v.ok);
  ui.premiumContent.hidden = !v.ok;
  ui.network.textContent =
    !synced && !v.offline
      ? 'Checking connection…'
      : v.offline
        ? 'Offline'
        : statusFailed
          ? 'Online, but the revocation list could not be loaded'
          : 'Online';
  ui.expiry.textContent = v.expiresAt ? `License expires ${dateFormat.format(v.expiresAt)}` : 'No license on this device';
  if (!verdictShown) {
    verdictShown = true;
    performance.mark('latchkey:verdict');
  }
}

function say(text) {
  ui.activity.textContent = text;
}

function showError(error) {
  ui.error.textContent = error?.message || String(error);
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = '';
  ui.error.hidden = true;
}

function setBusy(on) {
  busy = on;
  ui.main.setAttribute('aria-busy', String(on));
  for (const button of document.querySelectorAll('button')) button.disabled = on;
}

function renderAccount(me, offlineAccount) {
  signedIn = Boolean(me);
  if (me) ui.who.textContent = `Signed in as ${me.username}`;
  else if (offlineAccount) ui.who.textContent = `Signed in as ${offlineAccount.username} (offline)`;
  else ui.who.textContent = 'Not signed in';
  ui.signedInActions.hidden = !me && !offlineAccount;
  ui.passkeys.hidden = !me;
  ui.devices.hidden = !me;
  if (me) renderPasskeys(me.passkeys ?? []);
  if (me) renderDevices(me.devices ?? []);
  if (me) {
    const left = me.recovery_codes_left ?? 0;
    ui.recoveryCodesStatus.textContent = left
      ? `${left} unused recovery code${left === 1 ? '' : 's'}. Making new ones replaces them.`
      : 'No recovery codes yet: make some in case you lose your passkeys.';
  } else {
    ui.recoveryCodes.hidden = true;
    ui.recoveryCodeList.replaceChildren();
  }
}

function formatDate(value) {
  const d = value ? new Date(value) : null;
  return d && !Number.isNaN(d.getTime()) ? dateFormat.format(d) : 'never';
}

function renderPasskeys(passkeys) {
  ui.passkeyList.replaceChildren(...passkeys.map(passkeyItem));
}

function passkeyItem(passkey, index) {
  const name = passkey.name || `Passkey ${index + 1}`;
  const li = document.createElement('li');
  li.className = 'passkey';

  const title = document.createElement('p');
  title.className = 'passkey-name';
  title.textContent = name;
  const meta = document.createElement('p');
  meta.className = 'meta';
  const sync = passkey.backup_state ? 'synced' : passkey.backup_eligible ? 'can sync' : 'this device only';
  const keeper = passkey.provider && passkey.provider !== name ? ` · kept by ${passkey.provider}` : '';
  meta.textContent = `Added ${formatDate(passkey.created_at)} · last used ${formatDate(passkey.last_used_at)} · ${sync}${keeper}`;

  const form = document.createElement('form');
  form.className = 'rename';
  const inputId = `passkey-name-${index}`;
  const label = document.createElement('label');
  label.htmlFor = inputId;
  label.textContent = `New name for ${name}`;
  const input = document.createElement('input');
  input.id = inputId;
  input.type = 'text';
  input.maxLength = 64;
  input.required = true;
  input.value = name;
  const rename = document.createElement('button');
  rename.type = 'submit';
  rename.textContent = 'Rename';
  rename.setAttribute('aria-label', `Rename passkey ${name}`);
  form.append(label, input, rename);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = input.value.trim();
    if (!next) return showError(new Error('Give the passkey a name.'));
    run(`Renaming ${name}`, async () => {
      await latchkey.renamePasskey(passkey.id, next);
      await refreshAccount();
      say(`Renamed to ${next}.`);
    });
  });

  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'danger';
  remove.textContent = 'Remove';
  remove.setAttribute('aria-label', `Remove passkey ${name}`);
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.className = 'secondary';
  cancel.textContent = 'Keep it';
  cancel.hidden = true;
  let confirming = false;
  const reset = () => {
    confirming = false;
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove passkey ${name}`);
    cancel.hidden = true;
  };
  cancel.addEventListener('click', reset);
  remove.addEventListener('click', () => {
    if (!confirming) {
      confirming = true;
      remove.textContent = 'Yes, remove';
      remove.setAttribute('aria-label', `Yes, remove passkey ${name}`);
      cancel.hidden = false;
      return;
    }
    reset();
    run(`Removing ${name}`, async () => {
      await latchkey.removePasskey(passkey.id);
      await refreshAccount();
      say(`Removed ${name}.`);
    });
  });

  const actions = document.createElement('div');
  actions.className = 'actions';
  actions.append(remove, cancel);
  li.append(title, meta, form, actions);
  return li;
}

/** This browser's device key thumbprint, if it has one (to mark "this device"). */
let ownDevice = null;

async function renderDevices(devices) {
  if (!ownDevice && devices.length) ownDevice = (await latchkey.ensureDeviceKey().catch(() => null))?.jkt ?? null;
  ui.deviceList.replaceChildren(...devices.map(deviceItem));
  if (!devices.length) {
    const li = document.createElement('li');
    li.textContent = 'No devices yet: a device appears here when it gets an offline license.';
    ui.deviceList.append(li);
  }
}

function deviceItem(device) {
  const here = device.id === ownDevice;
  const name = device.name;
  const li = document.createElement('li');
  li.className = 'passkey';
  const title = document.createElement('p');
  title.className = 'passkey-name';
  title.textContent = here ? `${name} (this device)` : name;
  const meta = document.createElement('p');
  meta.className = 'meta';
  const licenses = device.active_licenses === 1 ? '1 active license' : `${device.active_licenses} active licenses`;
  meta.textContent = `First seen ${formatDate(device.first_seen)} · last sync ${formatDate(device.last_sync)} · ${licenses}`;

  const form = document.createElement('form');
  form.className = 'rename';
  const inputId = `device-name-${device.id}`;
  const label = document.createElement('label');
  label.htmlFor = inputId;
  label.textContent = `New name for device ${name}`;
  const input = document.createElement('input');
  input.id = inputId;
  input.type = 'text';
  input.maxLength = 64;
  input.required = true;
  input.value = name;
  const rename = document.createElement('button');
  rename.type = 'submit';
  rename.textContent = 'Rename';
  rename.setAttribute('aria-label', `Rename device ${name}`);
  form.append(label, input, rename);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = input.value.trim();
    if (!next) return showError(new Error('Give the device a name.'));
    run(`Renaming ${name}`, async () => {
      await latchkey.renameDevice(device.id, next);
      say(`Renamed to ${next}.`);
      await refreshAccount();
    });
  });

  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'danger';
  remove.textContent = 'Remove';
  const label0 = `Remove device ${title.textContent}`;
  remove.setAttribute('aria-label', label0);
  let confirming = false;
  remove.addEventListener('click', () => {
    if (!confirming) {
      confirming = true;
      remove.textContent = 'Yes, remove';
      remove.setAttribute('aria-label', `Yes, remove device ${title.textContent}`);
      return;
    }
    run(`Removing ${name}`, async () => {
      await latchkey.removeDevice(device.id);
      say(`Removed ${name}. Its licenses are revoked.`);
      await syncNow();
    });
  });
  const actions = document.createElement('div');
  actions.className = 'actions';
  actions.append(remove);
  li.append(title, meta, form, actions);
  return li;
}

// ------------------------------------------------------------------------------- behaviour

/** Runs one button-driven action: ends autofill first, shows progress, reports errors plainly. */
async function run(progress, action) {
  if (busy) return;
  stopAutofill();
  clearError();
  setBusy(true);
  say(`${progress}…`);
  try {
    await action();
  } catch (error) {
    say('');
    if (error?.name !== 'AbortError') showError(error);
  } finally {
    setBusy(false);
    if (!signedIn) startAutofill();
  }
}

async function refreshAccount() {
  try {
    renderAccount(await latchkey.me(), null);
  } catch {
    renderAccount(null, await latchkey.account());
  }
}

async function syncNow() {
  const report = await latchkey.sync();
  await onSync(report);
}

async function onSync(report) {
  synced = true;
  statusFailed = report.online && report.status === 'failed';
  if (report.online) renderAccount(report.me, null);
  else renderAccount(null, await latchkey.account());
  await showVerdict();
  if (report.online && !report.me && !busy) startAutofill();
}

async function startAutofill() {
  if (autofill || busy || signedIn || latchkey.isOffline()) return;
  const PKC = window.PublicKeyCredential;
  if (!PKC?.isConditionalMediationAvailable || !(await PKC.isConditionalMediationAvailable())) return;
  if (autofill || busy) return;
  const controller = new AbortController();
  autofill = controller;
  try {
    const user = await latchkey.signIn({ autofill: true, signal: controller.signal });
    if (autofill === controller) autofill = null;
    clearError();
    say(`Signed in as ${user.username}.`);
    await syncNow();
  } catch (error) {
    // A dismissed or empty autofill is not news; a passkey the service refused is.
    const quiet = error?.name === 'AbortError' || error?.code === 'cancelled';
    if (!quiet && autofill === controller) showError(error);
  } finally {
    if (autofill === controller) autofill = null;
  }
}

function stopAutofill() {
  autofill?.abort();
  autofill = null;
}

function username() {
  return ui.username.value.trim();
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const name = username();
  if (!name) {
    showError(new Error('Enter a username to create a passkey.'));
    ui.username.focus();
    return;
  }
  run('Creating your passkey', async () => {
    const user = await latchkey.register(name);
    say(`Passkey created. Signed in as ${user.username ?? name}.`);
    await syncNow();
  });
});

$('signin-button').addEventListener('click', () =>
  run('Waiting for your passkey', async () => {
    const user = await latchkey.signIn({ username: username() || undefined });
    say(`Signed in as ${user.username}.`);
    await syncNow();
  }),
);

$('license-button').addEventListener('click', () =>
  run('Getting an offline license', async () => {
    const { expiresAt } = await latchkey.fetchLicense();
    say(`Offline license saved. It works until ${dateFormat.format(expiresAt)}.`);
    await syncNow();
  }),
);

$('unlock-button').addEventListener('click', () =>
  run('Waiting for your passkey', async () => {
    ui.unlockResult.textContent = '';
    const result = await latchkey.unlockWithPasskey();
    ui.unlockResult.textContent = result.ok
      ? `Passkey confirmed${result.username ? ` for ${result.username}` : ''}`
      : `Passkey not confirmed: ${result.reason}`;
    ui.unlockResult.classList.toggle('ok', result.ok);
    say('');
    await showVerdict();
  }),
);

$('premium-button').addEventListener('click', () =>
  run('Calling the premium API', async () => {
    ui.premiumResult.textContent = '';
    const body = await latchkey.callPremium();
    ui.premiumResult.textContent = `Premium API says: ${body.message ?? JSON.stringify(body)}`;
    say('');
  }),
);

$('signout-button').addEventListener('click', () =>
  run('Signing out', async () => {
    let offline = false;
    try {
      await latchkey.signOut();
    } catch (error) {
      if (error?.code !== 'offline') throw error;
      offline = true;
    } finally {
      renderAccount(null, null);
      ui.unlockResult.textContent = '';
      await showVerdict();
    }
    say(offline ? "Signed out on this device. You're offline: the service is told as soon as you're back online." : 'Signed out.');
  }),
);

$('signout-everywhere-button').addEventListener('click', () =>
  run('Signing out everywhere', async () => {
    let offline = false;
    try {
      await latchkey.signOutEverywhere();
    } catch (error) {
      if (error?.code !== 'offline') throw error;
      offline = true;
    }
    renderAccount(null, null);
    await showVerdict();
    say(offline ? "Signed out on this device. You're offline: your other devices are signed out when you're back online." : 'Signed out on every device.');
  }),
);

// A recovery link from an administrator: /?recover=lke_… adds a passkey to the existing account.
const recoveryCode = new URLSearchParams(location.search).get('recover');

$('recover-button').addEventListener('click', () =>
  run('Creating your new passkey', async () => {
    const user = await latchkey.recover({ token: recoveryCode });
    ui.recover.hidden = true;
    // The code works once: don't leave it in the address bar or the history.
    history.replaceState(null, '', location.pathname);
    say(`Passkey added. Signed in as ${user.username}.`);
    await syncNow();
  }),
);

$('recovery-code-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = username();
  const code = ui.recoveryCode.value.trim();
  if (!name || !code) {
    showError(new Error('Enter your username and one of your recovery codes.'));
    (name ? ui.recoveryCode : ui.username).focus();
    return;
  }
  run('Creating your new passkey', async () => {
    const user = await latchkey.recover({ username: name, code });
    ui.recoveryCode.value = '';
    say(`Passkey added. Signed in as ${user.username}.`);
    await syncNow();
  });
});

$('recovery-codes-button').addEventListener('click', () =>
  run('Making recovery codes', async () => {
    const { codes } = await latchkey.recoveryCodes();
    ui.recoveryCodeList.replaceChildren(
      ...codes.map((code) => {
        const li = document.createElement('li');
        li.textContent = code;
        return li;
      }),
    );
    ui.recoveryCodes.hidden = false;
    say('Recovery codes made. Keep them somewhere safe.');
    await refreshAccount();
  }),
);

$('add-passkey-button').addEventListener('click', () =>
  run('Creating another passkey', async () => {
    await latchkey.addPasskey();
    say('Passkey added.');
    await refreshAccount();
  }),
);

addEventListener('offline', () => showVerdict());
setInterval(() => {
  if (!busy) showVerdict();
}, 30_000);

async function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  try {
    await navigator.serviceWorker.register(new URL('sw.js', HERE), { scope: HERE.pathname, type: 'classic' });
  } catch (error) {
    console.warn('Offline support is off: the service worker did not register.', error);
  }
}

async function start() {
  registerServiceWorker();
  if (recoveryCode) {
    ui.recover.hidden = false;
    say('Add a passkey to recover your account.');
  }
  await showVerdict();
  const account = await latchkey.account();
  if (account) renderAccount(null, account);
  latchkey.startAutoSync({ intervalMs: 60_000, onSync });
}

start();
