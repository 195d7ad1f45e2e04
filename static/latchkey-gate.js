// <latchkey-gate entitlement="…">: content only while check() is ok, otherwise the reason.

import { LatchkeyElement, h } from './latchkey-ui.js';

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

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
      // The service answered but the revocation list did not come: worth saying, not "offline".
      this.noStatus = Boolean(e.detail?.statusUnavailable) && e.detail?.connection === 'online';
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
    const shown = connection === 'online' && this.noStatus ? 'no-status' : connection;
    this.connectionWord.textContent = this.say(`connection.${shown}`);
    this.connectionLine.hidden = shown === 'online' || shown === 'unknown';
    this.connectionLine.textContent = this.connectionLine.hidden ? '' : this.say(`connection.${shown}.sentence`);
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
