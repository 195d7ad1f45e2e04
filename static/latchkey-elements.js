// Latchkey drop-in web components: <latchkey-signin>, <latchkey-account> and
// <latchkey-gate entitlement="premium">. No build step, no inline script or style (styles are
// constructable stylesheets inside each shadow root, so a strict Content-Security-Policy holds).
// Style them with CSS custom properties (--latchkey-accent, --latchkey-ok, --latchkey-danger,
// --latchkey-muted, --latchkey-line, --latchkey-surface, --latchkey-radius, --latchkey-font)
// and ::part() (button, primary, danger, input, label, hint, status, alert, progress, cancel,
// verdict, message, facts, connection, expiry, content, locked, retry, list, item, name, meta).
//
//   <script type="module" src="/auth/latchkey-elements.js"></script>
//   <latchkey-signin></latchkey-signin>
//   <latchkey-account></latchkey-account>
//   <latchkey-gate entitlement="premium">…premium content…<p slot="locked">…</p></latchkey-gate>
//
// They share one client, made for the service this module was loaded from; call
// `configure(options)` (createLatchkey's options, e.g. `messages` to translate) before the
// elements connect to change it, or `configure(instance)` to pass your own.

import { createLatchkey } from './latchkey.js';

const HERE = new URL('./', import.meta.url);
let shared = null;
/** Elements in the document, so that configure() can move them to a new client. */
const live = new Set();

/**
 * Sets the client every element uses: createLatchkey options, or a client made already.
 * Elements already on the page switch to it.
 * @param {object} [optionsOrClient]
 */
export function configure(optionsOrClient = {}) {
  shared =
    typeof optionsOrClient?.check === 'function'
      ? optionsOrClient
      : createLatchkey({ origin: HERE.origin, base: HERE.pathname, ...optionsOrClient });
  for (const el of live) {
    el.stop();
    el.start();
  }
  return shared;
}

/** The shared client (made on first use for the service this module came from). */
export function client() {
  return shared ?? configure();
}

const CSS = `
:host {
  display: block;
  font-family: var(--latchkey-font, inherit);
  color: inherit;
  --_accent: var(--latchkey-accent, #1d3557);
  --_accent-ink: var(--latchkey-accent-ink, #fff);
  --_ok: var(--latchkey-ok, #116329);
  --_danger: var(--latchkey-danger, #a40e26);
  --_muted: var(--latchkey-muted, #57606a);
  --_line: var(--latchkey-line, #d0d7de);
  --_surface: var(--latchkey-surface, transparent);
  --_radius: var(--latchkey-radius, 0.5rem);
  --_focus: var(--latchkey-focus, #0969da);
}
:host([hidden]) { display: none; }
[hidden] { display: none !important; }
p { margin: 0.25rem 0; }
.stack { display: grid; gap: 0.5rem; }
.actions { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; margin-top: 0.25rem; }
label { font-weight: 600; }
input {
  font: inherit; padding: 0.5rem 0.625rem; border: 1px solid var(--_line); border-radius: var(--_radius);
  background: var(--_surface); color: inherit; min-width: 0; width: 100%;
}
button {
  font: inherit; padding: 0.5rem 0.875rem; border-radius: var(--_radius); cursor: pointer;
  border: 1px solid var(--_accent); background: transparent; color: inherit; min-height: 2.5rem;
}
button.primary { background: var(--_accent); color: var(--_accent-ink); }
button.danger { border-color: var(--_danger); color: var(--_danger); }
button:disabled { opacity: 0.55; cursor: not-allowed; }
:focus-visible { outline: 3px solid var(--_focus); outline-offset: 2px; }
.hint, .meta { color: var(--_muted); font-size: 0.925em; }
.alert { color: var(--_danger); }
.progress { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: center; }
.spinner {
  inline-size: 1em; block-size: 1em; border-radius: 50%; border: 2px solid var(--_line);
  border-top-color: var(--_accent); animation: spin 0.9s linear infinite;
}
@keyframes spin { to { transform: rotate(1turn); } }
@media (prefers-reduced-motion: reduce) { .spinner { animation: none; } }
ul { list-style: none; margin: 0; padding: 0; display: grid; gap: 0.75rem; }
li { border: 1px solid var(--_line); border-radius: var(--_radius); padding: 0.75rem; display: grid; gap: 0.5rem; }
.name { font-weight: 600; margin: 0; overflow-wrap: anywhere; }
.rename { display: grid; grid-template-columns: 1fr auto; gap: 0.5rem; align-items: end; }
.rename label { grid-column: 1 / -1; font-weight: normal; }
.verdict { font-size: 1.2em; font-weight: 600; margin: 0; }
.verdict.ok { color: var(--_ok); }
.verdict.locked { color: var(--_danger); }
.facts { color: var(--_muted); font-size: 0.925em; }
h3 { font-size: 1em; margin: 0.75rem 0 0.25rem; }
ol.codes {
  font-family: ui-monospace, SFMono-Regular, Menlo, monospace; display: grid; gap: 0.25rem 1.5rem;
  grid-template-columns: repeat(auto-fill, minmax(12rem, 1fr)); padding-left: 1.75rem; margin: 0.5rem 0;
}
summary { cursor: pointer; color: var(--_accent); }
details[open] summary { margin-bottom: 0.5rem; }
`;

let sheet = null;
function styles() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  }
  return sheet;
}

/**
 * Builds an element: attributes (`part`, `class`, `aria-*`, …), properties (`on*` listeners,
 * `hidden`, `disabled`, …) and children (strings become text, never markup).
 */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'hidden' || k === 'disabled' || k === 'required' || k === 'value' || k === 'maxLength') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

let uid = 0;
const nextId = (prefix) => `${prefix}-${++uid}`;

/** What every element shares: a shadow root, the client, progress with Cancel, messages. */
class LatchkeyElement extends HTMLElement {
  constructor() {
    super();
    this.root = this.attachShadow({ mode: 'open' });
    this.root.adoptedStyleSheets = [styles()];
    /** @type {AbortController | null} */
    this.pending = null;
    this.listeners = [];
  }

  get latchkey() {
    return client();
  }

  say(key, context, fallback) {
    return this.latchkey.message(key, context, fallback);
  }

  connectedCallback() {
    live.add(this);
    // After the current script: a page that calls configure() right after importing this
    // module gets its own client in every element from the start.
    queueMicrotask(() => {
      if (this.isConnected && this.listeners.length === 0) this.start();
    });
  }

  disconnectedCallback() {
    live.delete(this);
    this.stop();
  }

  start() {
    const on = (target, type, fn) => {
      target.addEventListener(type, fn);
      this.listeners.push(() => target.removeEventListener(type, fn));
    };
    this.subscribe(on);
    this.latchkey.startAutoSync();
    this.refresh();
  }

  stop() {
    for (const off of this.listeners.splice(0)) off();
    this.pending?.abort();
  }

  /** Registers listeners with `on(target, type, fn)`; removed when the element leaves. */
  subscribe(_on) {}

  /** Re-reads what the element shows. */
  async refresh() {}

  /** Tells the page whether an action of this element is under way (`latchkey-busy`). */
  setBusy(on) {
    this.toggleAttribute('busy', on);
    this.setAttribute('aria-busy', String(on));
    this.dispatchEvent(new CustomEvent('latchkey-busy', { detail: on, bubbles: true, composed: true }));
  }

  /**
   * Runs one action with progress (and a Cancel button that aborts it), then shows its
   * result sentence or its error. Returns whether it succeeded.
   * @param {string} progress sentence shown meanwhile
   * @param {(signal: AbortSignal) => Promise<string | void>} action resolves with the result sentence
   */
  async run(progress, action) {
    if (this.pending) return false;
    const controller = new AbortController();
    const before = this.root.activeElement;
    this.pending = controller;
    this.setBusy(true);
    this.showAlert('');
    this.showProgress(progress, () => controller.abort());
    let ok = false;
    let said = '';
    let failure = '';
    try {
      said = (await action(controller.signal)) ?? '';
      ok = true;
    } catch (error) {
      if (error?.name === 'AbortError' || controller.signal.aborted) said = this.say('done.cancelled');
      else failure = this.latchkey.describe(error);
    } finally {
      this.pending = null;
      this.changedAt = Date.now();
      // What the result says is on screen by the time it is announced.
      await this.refresh();
      this.showProgress(null);
      this.showStatus(said);
      this.showAlert(failure);
      this.setBusy(false);
      // Focus goes back where it was, or to the result, never to nowhere.
      const back = before && before.isConnected && !before.disabled && before.offsetParent !== null ? before : null;
      if (back) back.focus();
      else if (this.root.activeElement === null || this.root.activeElement === this.cancelButton) {
        (this.alertLine.hidden ? this.statusLine : this.alertLine).focus();
      }
    }
    return ok;
  }

  /** The live regions every element has: a status line, an alert line, and progress. */
  regions() {
    this.statusLine = h('p', { part: 'status', role: 'status', 'aria-live': 'polite', class: 'status', tabindex: '-1' });
    this.alertLine = h('p', { part: 'alert', role: 'alert', class: 'alert', hidden: true, tabindex: '-1' });
    this.progressText = h('span', {});
    this.cancelButton = h('button', { type: 'button', part: 'button cancel', class: 'cancel' }, 'Cancel');
    this.progressBox = h(
      'div',
      { part: 'progress', class: 'progress', hidden: true },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }),
      h('span', { role: 'status', 'aria-live': 'polite' }, this.progressText),
      this.cancelButton,
    );
    return [this.progressBox, this.statusLine, this.alertLine];
  }

  showStatus(text) {
    if (this.statusLine) this.statusLine.textContent = text;
  }

  showAlert(text) {
    if (!this.alertLine) return;
    this.alertLine.textContent = text;
    this.alertLine.hidden = !text;
  }

  showProgress(text, cancel) {
    if (!this.progressBox) return;
    if (text === null) {
      this.progressBox.hidden = true;
      this.cancelButton.onclick = null;
      return;
    }
    this.progressText.textContent = `${text} ${this.say('progress.hint')}`;
    this.cancelButton.onclick = cancel;
    this.progressBox.hidden = false;
    // Keyboard users land on the one thing they can do now.
    queueMicrotask(() => this.cancelButton.focus());
  }
}

// ------------------------------------------------------------------------------ <latchkey-signin>

/**
 * Sign in with a passkey (browser autofill included) or create one; hidden controls while
 * signed in; a recovery entry point. Fires `latchkey-signin` ({user_id, username}).
 */
export class LatchkeySignin extends LatchkeyElement {
  constructor() {
    super();
    const id = nextId('latchkey-username');
    this.input = h('input', {
      id,
      part: 'input',
      name: 'username',
      type: 'text',
      autocomplete: 'username webauthn',
      autocapitalize: 'none',
      autocorrect: 'off',
      spellcheck: 'false',
      maxLength: 64,
      'aria-describedby': `${id}-hint`,
    });
    this.signInButton = h('button', { type: 'submit', part: 'button primary', class: 'primary' }, 'Sign in with passkey');
    this.createButton = h('button', { type: 'button', part: 'button', onclick: () => this.create() }, 'Create passkey');
    this.offlineLine = h('p', { part: 'hint', class: 'hint', hidden: true });
    this.form = h(
      'form',
      { part: 'form', class: 'stack', novalidate: true, onsubmit: (e) => (e.preventDefault(), this.signIn()) },
      h('label', { for: id, part: 'label' }, 'Username'),
      this.input,
      h('p', { id: `${id}-hint`, part: 'hint', class: 'hint' }, 'Sign in with a saved passkey (leave the name empty to pick one), or enter a name and create a new passkey.'),
      this.offlineLine,
      h('div', { class: 'actions' }, this.signInButton, this.createButton),
    );
    const codeId = nextId('latchkey-recovery-code');
    this.codeInput = h('input', {
      id: codeId,
      part: 'input',
      name: 'code',
      type: 'text',
      autocomplete: 'off',
      autocapitalize: 'characters',
      spellcheck: 'false',
      maxLength: 64,
      'aria-describedby': `${codeId}-hint`,
    });
    this.recoverButton = h('button', { type: 'submit', part: 'button' }, 'Add a passkey with the code');
    this.recovery = h(
      'details',
      { part: 'recovery', class: 'recovery' },
      h('summary', {}, 'Lost your passkey? Use a recovery code'),
      h(
        'form',
        { class: 'stack', novalidate: true, onsubmit: (e) => (e.preventDefault(), this.recoverWithCode()) },
        h('label', { for: codeId, part: 'label' }, 'Recovery code'),
        this.codeInput,
        (this.codeHint = h('p', { id: `${codeId}-hint`, part: 'hint', class: 'hint' })),
        h('div', { class: 'actions' }, this.recoverButton),
        (this.recoveryText = h('p', { class: 'hint', part: 'hint' })),
      ),
    );
    // A recovery link (…?recover=lke_…) from the app's support adds a passkey to the account.
    this.linkCode = new URLSearchParams(globalThis.location?.search ?? '').get('recover');
    this.linkButton = h('button', { type: 'button', part: 'button primary', class: 'primary', onclick: () => this.recoverWithLink() }, 'Add a passkey');
    this.linkPanel = h(
      'section',
      { part: 'recovery-link', hidden: !this.linkCode },
      h('h3', {}, 'Recover your account'),
      (this.linkText = h('p', {})),
      h('div', { class: 'actions' }, this.linkButton),
    );
    this.root.append(this.linkPanel, this.form, this.recovery, ...this.regions());
    this.autofill = null;
    this.signedIn = false;
  }

  subscribe(on) {
    const lk = this.latchkey;
    on(lk.events, 'account', () => this.refresh());
    on(lk.events, 'connection', () => this.refresh());
    on(lk.events, 'sync', () => this.refresh());
  }

  disconnectedCallback() {
    this.stopAutofill();
    super.disconnectedCallback();
  }

  async refresh() {
    const account = await this.latchkey.account();
    this.recoveryText.textContent = this.say('recovery.lost');
    this.codeHint.textContent = this.say('recovery.code-hint');
    this.linkText.textContent = this.say('recovery.link');
    this.linkPanel.hidden = !this.linkCode;
    this.signedIn = Boolean(account);
    const offline = this.latchkey.connection() === 'offline';
    const busy = Boolean(this.pending);
    // Controls that cannot succeed are not offered: none while signed in, none offline.
    this.form.hidden = this.signedIn;
    this.recovery.hidden = this.signedIn;
    this.offlineLine.hidden = !offline;
    this.offlineLine.textContent = offline ? this.say('offline.signin') : '';
    this.signInButton.hidden = offline;
    this.createButton.hidden = offline;
    this.recoverButton.hidden = offline;
    this.linkButton.disabled = busy || offline;
    for (const control of [this.signInButton, this.createButton, this.recoverButton, this.input, this.codeInput]) control.disabled = busy;
    if (!this.signedIn && !offline && !busy) this.startAutofill();
    else if (this.signedIn || offline) this.stopAutofill();
  }

  async startAutofill() {
    if (this.autofill || this.pending || this.signedIn) return;
    const PKC = globalThis.PublicKeyCredential;
    if (!PKC?.isConditionalMediationAvailable || !(await PKC.isConditionalMediationAvailable())) return;
    if (this.autofill || this.pending || this.signedIn || !this.isConnected) return;
    const controller = new AbortController();
    this.autofill = controller;
    try {
      const user = await this.latchkey.signIn({ autofill: true, signal: controller.signal });
      if (this.autofill === controller) this.autofill = null;
      this.showAlert('');
      this.showStatus(this.say('done.signin', { username: user.username }));
      this.signedInEvent(user);
      await this.latchkey.sync();
    } catch (error) {
      // A dismissed or empty autofill is not news; a passkey the service refused is.
      const quiet = error?.name === 'AbortError' || error?.code === 'cancelled' || error?.code === 'no-passkey';
      if (!quiet && this.autofill === controller) this.showAlert(this.latchkey.describe(error));
    } finally {
      if (this.autofill === controller) this.autofill = null;
    }
  }

  stopAutofill() {
    this.autofill?.abort();
    this.autofill = null;
  }

  signedInEvent(user) {
    this.dispatchEvent(new CustomEvent('latchkey-signin', { detail: user, bubbles: true, composed: true }));
  }

  signIn() {
    const username = this.input.value.trim() || undefined;
    this.stopAutofill();
    return this.run(this.say('progress.signin'), async (signal) => {
      const user = await this.latchkey.signIn({ username, signal });
      this.signedInEvent(user);
      await this.latchkey.sync({ signal });
      return this.say('done.signin', { username: user.username });
    });
  }

  recoverWithCode() {
    const username = this.input.value.trim();
    const code = this.codeInput.value.trim();
    if (!username || !code) {
      this.showAlert(this.say('need.recovery'));
      (username ? this.codeInput : this.input).focus();
      return Promise.resolve(false);
    }
    this.stopAutofill();
    return this.run(this.say('progress.recover'), async (signal) => {
      const user = await this.latchkey.recover(username, code, { signal });
      this.codeInput.value = '';
      this.signedInEvent(user);
      await this.latchkey.sync({ signal });
      return this.say('done.recovered', { username: user.username });
    });
  }

  recoverWithLink() {
    const code = this.linkCode;
    this.stopAutofill();
    return this.run(this.say('progress.recover'), async (signal) => {
      const user = await this.latchkey.enroll(code, { signal });
      this.linkCode = null;
      // The code works once: it leaves the address bar and the history.
      const url = new URL(globalThis.location.href);
      url.searchParams.delete('recover');
      globalThis.history?.replaceState(null, '', url.pathname + url.search + url.hash);
      this.signedInEvent(user);
      await this.latchkey.sync({ signal });
      return this.say('done.recovered', { username: user.username });
    });
  }

  create() {
    const username = this.input.value.trim();
    if (!username) {
      this.showAlert(this.say('need.username'));
      this.input.focus();
      return Promise.resolve(false);
    }
    this.stopAutofill();
    return this.run(this.say('progress.register'), async (signal) => {
      const user = await this.latchkey.register(username, { signal });
      this.signedInEvent({ ...user, username: user.username ?? username });
      await this.latchkey.sync({ signal });
      return this.say('done.register', { username: user.username ?? username });
    });
  }
}

// ----------------------------------------------------------------------------- <latchkey-account>

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const formatDate = (value) => {
  const d = value ? new Date(value) : null;
  return d && !Number.isNaN(d.getTime()) ? dateFormat.format(d) : 'never';
};

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

  deviceItem(device) {
    const name = device.name;
    const title = device.id === this.ownDevice ? `${name} (this device)` : name;
    const count = device.active_licenses ?? 0;
    const licenses = count === 1 ? '1 active license' : `${count} active licenses`;
    const inputId = nextId('latchkey-device-name');
    const input = h('input', { id: inputId, part: 'input', type: 'text', maxLength: 64, required: true, value: name });
    const rename = h('form', {
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
          await this.latchkey.renameDevice(device.id, next, { signal });
          this.me = null;
          return this.say('done.renamed', { name: next });
        });
      },
    });
    rename.append(
      h('label', { for: inputId, part: 'label' }, `New name for device ${name}`),
      input,
      h('button', { type: 'submit', part: 'button', 'aria-label': `Rename device ${name}` }, 'Rename'),
    );
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
        // Its licenses are revoked: this device learns it (if it was this one) at once.
        await this.latchkey.sync({ signal });
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
    const inputId = nextId('latchkey-passkey-name');
    const input = h('input', { id: inputId, part: 'input', type: 'text', maxLength: 64, required: true, value: name });
    const rename = h('form', {
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
          await this.latchkey.renamePasskey(passkey.id, next, { signal });
          this.me = null;
          return this.say('done.renamed', { name: next });
        });
      },
    });
    rename.append(
      h('label', { for: inputId, part: 'label' }, `New name for ${name}`),
      input,
      h('button', { type: 'submit', part: 'button', 'aria-label': `Rename passkey ${name}` }, 'Rename'),
    );
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

// -------------------------------------------------------------------------------- <latchkey-gate>

/**
 * Shows its content only while `check(entitlement)` is ok; otherwise the reason as a sentence
 * and the `locked` slot. Reflects `state` (checking | ok | locked | signed-out) and `reason`
 * (the reason code) as attributes, and fires `latchkey-verdict` with the whole verdict.
 * Re-checks on every sync, sign-in or sign-out, connection change, and every 30 s.
 */
export class LatchkeyGate extends LatchkeyElement {
  static observedAttributes = ['entitlement', 'label'];

  constructor() {
    super();
    this.verdictLine = h('p', { part: 'verdict', class: 'verdict', id: 'verdict' });
    this.messageLine = h('p', { part: 'message', class: 'message' });
    this.connectionWord = h('span', { part: 'connection', class: 'connection' });
    this.expiry = h('span', { part: 'expiry' });
    this.connectionLine = h('p', { part: 'connection-message', class: 'hint', hidden: true });
    this.summary = h(
      'div',
      { part: 'summary', role: 'status', 'aria-live': 'polite' },
      this.verdictLine,
      this.messageLine,
      h('p', { part: 'facts', class: 'facts' }, this.connectionWord, h('span', { 'aria-hidden': 'true' }, ' · '), this.expiry),
      this.connectionLine,
    );
    this.retryButton = h('button', { type: 'button', part: 'button retry', onclick: () => this.retry() }, 'Check again');
    this.content = h('div', { part: 'content', hidden: true }, h('slot', {}));
    this.locked = h('div', { part: 'locked', hidden: true }, h('slot', { name: 'locked' }), h('div', { class: 'actions' }, this.retryButton));
    this.root.append(this.summary, this.content, this.locked, ...this.regions());
    this.seq = 0;
    this.verdictLine.textContent = 'Checking…';
  }

  get entitlement() {
    return this.getAttribute('entitlement') || undefined;
  }

  get label() {
    const e = this.entitlement ?? 'premium';
    return this.getAttribute('label') || e.charAt(0).toUpperCase() + e.slice(1);
  }

  attributeChangedCallback() {
    this.summary.setAttribute('aria-label', this.label);
    if (this.listeners.length) this.refresh();
  }

  connectedCallback() {
    this.summary.setAttribute('aria-label', this.label);
    if (!this.hasAttribute('state')) this.setAttribute('state', 'checking');
    super.connectedCallback();
  }

  subscribe(on) {
    const timer = setInterval(() => this.refresh(), 30_000);
    this.listeners.push(() => clearInterval(timer));
    const lk = this.latchkey;
    this.syncError = null;
    on(lk.events, 'sync', (e) => {
      // A license the service would not give (a device limit, say) is worth a sentence here.
      this.syncError = e.detail?.license === 'failed' ? e.detail.error : null;
      this.refresh();
    });
    for (const type of ['account', 'license', 'connection']) on(lk.events, type, () => this.refresh());
    on(globalThis, 'online', () => this.refresh());
    on(globalThis, 'offline', () => this.refresh());
  }

  async refresh() {
    const seq = ++this.seq;
    const v = await this.latchkey.check(this.entitlement);
    if (seq !== this.seq) return; // a newer check is on its way
    const state = v.ok ? 'ok' : v.reason === 'no license' && !v.signedIn ? 'signed-out' : 'locked';
    this.setAttribute('state', state);
    if (v.reason) this.setAttribute('reason', v.reason);
    else this.removeAttribute('reason');
    const label = this.label;
    this.verdictLine.textContent = state === 'ok' ? `${label} unlocked` : state === 'signed-out' ? `Sign in to use ${label}` : `${label} locked`;
    this.verdictLine.className = `verdict ${state === 'ok' ? 'ok' : state === 'locked' ? 'locked' : ''}`;
    this.messageLine.textContent = v.message;
    const connection = v.connection;
    this.connectionWord.textContent = this.say(`connection.${connection}`);
    this.connectionLine.hidden = connection === 'online' || connection === 'unknown';
    this.connectionLine.textContent = this.connectionLine.hidden ? '' : this.say(`connection.${connection}.sentence`);
    this.expiry.textContent = v.expiresAt ? this.say('license.expires', { date: dateFormat.format(v.expiresAt) }) : this.say('license.none');
    this.content.hidden = !v.ok;
    this.locked.hidden = v.ok;
    // "Check again" can only help when the service may be reached and someone is signed in.
    this.retryButton.hidden = state === 'signed-out' || connection === 'offline';
    this.retryButton.disabled = Boolean(this.pending);
    if (!this.pending) {
      const why = !v.ok && this.syncError && connection !== 'offline' ? this.latchkey.describe(this.syncError) : '';
      this.showAlert(why);
    }
    this.verdict = v;
    this.dispatchEvent(new CustomEvent('latchkey-verdict', { detail: v, bubbles: true, composed: true }));
  }

  retry() {
    return this.run('Checking with the service…', async (signal) => {
      const report = await this.latchkey.sync({ signal });
      if (report.error && !report.online) throw report.error;
      return '';
    });
  }
}

if (!customElements.get('latchkey-signin')) customElements.define('latchkey-signin', LatchkeySignin);
if (!customElements.get('latchkey-account')) customElements.define('latchkey-account', LatchkeyAccount);
if (!customElements.get('latchkey-gate')) customElements.define('latchkey-gate', LatchkeyGate);
