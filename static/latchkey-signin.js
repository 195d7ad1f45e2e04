// <latchkey-signin>: passkey sign-in (autofill included), create, and account recovery.

import { LatchkeyElement, h, nextId } from './latchkey-ui.js';

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
