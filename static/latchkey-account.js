// <latchkey-account>: the signed-in account: passkeys, devices, recovery codes, sign-out.

import { LatchkeyElement, formatDate, h, nextId } from './latchkey-ui.js';

/**
 * The signed-in account: passkeys (rename; remove, never the last one; add), sign out, sign
 * out everywhere. Hidden while signed out. Fires `latchkey-signout`.
 */
export class LatchkeyAccount extends LatchkeyElement {
  constructor() {
    super();
    this.who = h('p', { part: 'who', class: 'name' });
    this.offlineLine = h('p', { part: 'hint', class: 'hint', hidden: true });
    this.list = h('ul', { part: 'list', 'aria-label': 'Your passkeys' });
    this.passkeys = h('section', { hidden: true }, h('h3', {}, 'Your passkeys'), this.list);
    this.addButton = h('button', { type: 'button', part: 'button', onclick: () => this.add() }, 'Add a passkey');
    this.signOutButton = h('button', { type: 'button', part: 'button', onclick: () => this.signOut() }, 'Sign out');
    this.everywhereButton = h(
      'button',
      { type: 'button', part: 'button danger', class: 'danger', onclick: () => this.signOutEverywhere() },
      'Sign out everywhere',
    );
    this.actions = h('div', { class: 'actions' }, this.addButton, this.signOutButton, this.everywhereButton);
    this.deviceList = h('ul', { part: 'list', 'aria-label': 'Your devices' });
    this.devicesAbout = h('p', { part: 'hint', class: 'hint' });
    this.devices = h('section', { hidden: true }, h('h3', {}, 'Your devices'), this.devicesAbout, this.deviceList);
    this.codesStatus = h('p', { part: 'hint', class: 'hint' });
    this.codesButton = h('button', { type: 'button', part: 'button', onclick: () => this.makeCodes() }, 'Make recovery codes');
    this.codeList = h('ol', { part: 'codes', class: 'codes', 'aria-label': 'Recovery codes' });
    this.codesKeep = h('strong', {});
    this.codesShown = h('div', { hidden: true }, h('p', {}, this.codesKeep), this.codeList);
    this.recoveryCodes = h(
      'section',
      { hidden: true },
      h('h3', {}, 'Recovery codes'),
      this.codesStatus,
      h('div', { class: 'actions' }, this.codesButton),
      this.codesShown,
    );
    this.root.append(this.who, this.offlineLine, this.passkeys, this.actions, this.devices, this.recoveryCodes, ...this.regions());
    /** Recovery codes just made: shown once, to the account that made them. */
    this.codes = null;
    this.ownDevice = null;
    this.hidden = true;
    this.me = null;
  }

  subscribe(on) {
    const lk = this.latchkey;
    on(lk.events, 'sync', (e) => this.refresh(e.detail));
    on(lk.events, 'account', () => this.refresh());
    on(lk.events, 'connection', () => this.refresh(null, { fetch: false }));
  }

  /** @param {any} [report] a sync report with `me`, when one just arrived */
  async refresh(report, { fetch = true } = {}) {
    const lk = this.latchkey;
    const account = await lk.account();
    const online = !lk.isOffline();
    // A sync that began before this element's last change may carry the old account.
    if (report?.online && report.startedAt >= (this.changedAt ?? 0)) this.me = report.me;
    else if (fetch && online && account && !this.pending) {
      const asked = Date.now();
      this.fetching = (this.fetching ?? 0) + 1;
      try {
        const fresh = await lk.me().catch(() => undefined);
        if (fresh !== undefined && asked >= (this.changedAt ?? 0)) this.me = fresh;
      } finally {
        this.fetching -= 1;
      }
    } else if (!this.me && this.fetching && account) {
      return; // the refresh that is fetching the account shows it
    }
    if (!account) this.me = null;
    const me = this.me && account && this.me.user_id === account.user_id ? this.me : null;
    // A finished action's result stays readable even when the element hides (signed out).
    this.hidden = !account && !this.statusLine.textContent && this.alertLine.hidden;
    this.who.hidden = !account;
    this.actions.hidden = !account;
    if (!account) {
      this.passkeys.hidden = true;
      this.devices.hidden = true;
      this.recoveryCodes.hidden = true;
      this.codes = null;
      return;
    }
    const live = Boolean(me) && online;
    this.who.textContent = live ? `Signed in as ${account.username}` : `Signed in as ${account.username} (offline)`;
    this.offlineLine.hidden = live;
    this.offlineLine.textContent = live ? '' : this.say('offline.account');
    this.passkeys.hidden = !live;
    this.addButton.hidden = !live;
    this.everywhereButton.hidden = !live;
    const busy = Boolean(this.pending);
    for (const b of [this.addButton, this.signOutButton, this.everywhereButton]) b.disabled = busy;
    if (live && !busy) this.renderPasskeys(me.passkeys ?? []);
    // Devices and recovery codes, where the service has them.
    this.devices.hidden = !live || !Array.isArray(me?.devices);
    if (!this.devices.hidden && !busy) await this.renderDevices(me.devices);
    this.recoveryCodes.hidden = !live || typeof lk.makeRecoveryCodes !== 'function';
    if (!this.recoveryCodes.hidden) {
      this.codesStatus.textContent = this.say('recovery.codes-left', { left: me.recovery_codes_left ?? 0 });
      this.codesKeep.textContent = this.say('recovery.codes-keep');
      const shown = this.codes?.user_id === account.user_id ? this.codes.codes : null;
      this.codesShown.hidden = !shown;
      if (shown) this.codeList.replaceChildren(...shown.map((code) => h('li', {}, code)));
      this.codesButton.disabled = busy;
    }
  }

  async renderDevices(devices) {
    this.devicesAbout.textContent = this.say('devices.about');
    if (!this.ownDevice && devices.length) this.ownDevice = (await this.latchkey.ensureDeviceKey().catch(() => null))?.jkt ?? null;
    const key = JSON.stringify([this.ownDevice, devices]);
    if (key === this.drawnDevices) return;
    this.drawnDevices = key;
    this.deviceList.replaceChildren(...devices.map((d) => this.deviceItem(d)));
    if (!devices.length) this.deviceList.append(h('li', { part: 'item' }, this.say('devices.none')));
  }

  /**
   * The rename form of a passkey or device called `name`: an empty name is refused here,
   * `save(next, signal)` asks the service. Its label reads "New name for ${name}" for a
   * passkey and "New name for device ${name}" for a device.
   */
  renameForm(name, kind, save) {
    const inputId = nextId(`latchkey-${kind}-name`);
    const input = h('input', { id: inputId, part: 'input', type: 'text', maxLength: 64, required: true, value: name });
    const form = h('form', {
      class: 'rename',
      onsubmit: (event) => {
        event.preventDefault();
        const next = input.value.trim();
        if (!next) {
          this.showAlert(this.say('need.name'));
          input.focus();
          return;
        }
        this.run(`Renaming ${name}…`, async (signal) => {
          await save(next, signal);
          this.me = null;
          return this.say('done.renamed', { name: next });
        });
      },
    });
    const label = kind === 'device' ? `New name for device ${name}` : `New name for ${name}`;
    form.append(
      h('label', { for: inputId, part: 'label' }, label),
      input,
      h('button', { type: 'submit', part: 'button', 'aria-label': `Rename ${kind} ${name}` }, 'Rename'),
    );
    return form;
  }

  deviceItem(device) {
    const name = device.name;
    const title = device.id === this.ownDevice ? `${name} (this device)` : name;
    const count = device.active_licenses ?? 0;
    const licenses = count === 1 ? '1 active license' : `${count} active licenses`;
    const rename = this.renameForm(name, 'device', (next, signal) => this.latchkey.renameDevice(device.id, next, { signal }));
    const remove = h('button', { type: 'button', part: 'button danger', class: 'danger', 'aria-label': `Remove device ${title}` }, 'Remove');
    const confirm = h('button', { type: 'button', part: 'button danger', class: 'danger', hidden: true, 'aria-label': `Yes, remove device ${title}` }, 'Yes, remove');
    const keep = h('button', { type: 'button', part: 'button', hidden: true }, 'Keep it');
    remove.addEventListener('click', () => {
      remove.hidden = true;
      confirm.hidden = false;
      keep.hidden = false;
      confirm.focus();
    });
    keep.addEventListener('click', () => {
      remove.hidden = false;
      confirm.hidden = true;
      keep.hidden = true;
      remove.focus();
    });
    confirm.addEventListener('click', () =>
      this.run(`Removing ${name}…`, async (signal) => {
        await this.latchkey.removeDevice(device.id, { signal });
        this.me = null;
        // This very device: its licenses are revoked, and it learns so at once.
        if (device.id === this.ownDevice) await this.latchkey.sync({ signal });
        return this.say('done.device-removed', { name });
      }),
    );
    return h(
      'li',
      { part: 'item', class: 'device' },
      h('p', { part: 'name', class: 'name' }, title),
      h('p', { part: 'meta', class: 'meta' }, `First seen ${formatDate(device.first_seen)} · last sync ${formatDate(device.last_sync)} · ${licenses}`),
      rename,
      h('div', { class: 'actions' }, remove, confirm, keep),
    );
  }

  makeCodes() {
    return this.run('Making recovery codes…', async (signal) => {
      const account = await this.latchkey.account();
      const { codes } = await this.latchkey.makeRecoveryCodes({ signal });
      this.codes = { user_id: account?.user_id, codes };
      this.me = null;
      return this.say('recovery.codes-made');
    });
  }

  renderPasskeys(passkeys) {
    // Unchanged data is not drawn again: that would throw away what someone is typing.
    const key = JSON.stringify(passkeys);
    if (key === this.drawnPasskeys && this.list.isConnected) return;
    this.drawnPasskeys = key;
    const only = passkeys.length === 1;
    this.list.replaceChildren(...passkeys.map((p, i) => this.passkeyItem(p, i, only)));
  }

  passkeyItem(passkey, index, only) {
    const name = passkey.name || `Passkey ${index + 1}`;
    const sync = passkey.backup_state ? 'synced' : passkey.backup_eligible ? 'can sync' : 'this device only';
    const keeper = passkey.provider && passkey.provider !== name ? ` · kept by ${passkey.provider}` : '';
    const rename = this.renameForm(name, 'passkey', (next, signal) => this.latchkey.renamePasskey(passkey.id, next, { signal }));
    const actions = h('div', { class: 'actions' });
    if (only) {
      actions.append(h('p', { class: 'hint', part: 'hint' }, this.say('last-passkey')));
    } else {
      const remove = h('button', { type: 'button', part: 'button danger', class: 'danger', 'aria-label': `Remove passkey ${name}` }, 'Remove');
      const confirm = h('button', { type: 'button', part: 'button danger', class: 'danger', hidden: true, 'aria-label': `Yes, remove passkey ${name}` }, 'Yes, remove');
      const keep = h('button', { type: 'button', part: 'button', hidden: true }, 'Keep it');
      remove.addEventListener('click', () => {
        remove.hidden = true;
        confirm.hidden = false;
        keep.hidden = false;
        confirm.focus();
      });
      keep.addEventListener('click', () => {
        remove.hidden = false;
        confirm.hidden = true;
        keep.hidden = true;
        remove.focus();
      });
      confirm.addEventListener('click', () =>
        this.run(`Removing ${name}…`, async (signal) => {
          await this.latchkey.removePasskey(passkey.id, { signal });
          this.me = null;
          return this.say('done.removed', { name });
        }),
      );
      actions.append(remove, confirm, keep);
    }
    return h(
      'li',
      { part: 'item', class: 'passkey' },
      h('p', { part: 'name', class: 'name passkey-name' }, name),
      h('p', { part: 'meta', class: 'meta' }, `Added ${formatDate(passkey.created_at)} · last used ${formatDate(passkey.last_used_at)} · ${sync}${keeper}`),
      rename,
      actions,
    );
  }

  add() {
    return this.run(this.say('progress.add'), async (signal) => {
      await this.latchkey.addPasskey({ signal });
      this.me = null;
      return this.say('done.added');
    });
  }

  signOut() {
    return this.run('Signing out…', async (signal) => {
      let offline = false;
      try {
        await this.latchkey.signOut({ signal });
      } catch (error) {
        if (error?.code !== 'offline' && error?.code !== 'unreachable') throw error;
        offline = true;
      }
      this.me = null;
      this.dispatchEvent(new CustomEvent('latchkey-signout', { bubbles: true, composed: true }));
      return this.say(offline ? 'done.signout-offline' : 'done.signout');
    });
  }

  signOutEverywhere() {
    return this.run('Signing out everywhere…', async (signal) => {
      await this.latchkey.signOutEverywhere({ signal });
      this.me = null;
      this.dispatchEvent(new CustomEvent('latchkey-signout', { bubbles: true, composed: true }));
      return this.say('done.signout-everywhere');
    });
  }
}
