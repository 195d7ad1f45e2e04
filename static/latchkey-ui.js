// Latchkey components, shared parts: the one client the elements use, the element base class
// (shadow root, constructable stylesheet, progress with Cancel, live regions), and helpers.
// The elements themselves are in latchkey-signin.js, latchkey-account.js, latchkey-gate.js;
// latchkey-elements.js defines them.

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
export function h(tag, props = {}, ...children) {
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
export const nextId = (prefix) => `${prefix}-${++uid}`;

/** What every element shares: a shadow root, the client, progress with Cancel, messages. */
export class LatchkeyElement extends HTMLElement {
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

const dateFormatter = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
/** A date for people, or 'never'. */
export const formatDate = (value) => {
  const d = value ? new Date(value) : null;
  return d && !Number.isNaN(d.getTime()) ? dateFormatter.format(d) : 'never';
};
