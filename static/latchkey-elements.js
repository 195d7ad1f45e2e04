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
// They share one client, made for the service this module was loaded from: `client()` returns
// it; `configure(options)` (createLatchkey's options, e.g. `messages` to translate) or
// `configure(instance)` replaces it, and the elements on the page switch to the new one.
// Each element lives in its own module (latchkey-signin.js, latchkey-account.js,
// latchkey-gate.js) on shared parts (latchkey-ui.js); this one defines them.

import { LatchkeyAccount } from './latchkey-account.js';
import { LatchkeyGate } from './latchkey-gate.js';
import { LatchkeySignin } from './latchkey-signin.js';

export { client, configure } from './latchkey-ui.js';
export { LatchkeyAccount, LatchkeyGate, LatchkeySignin };

if (!customElements.get('latchkey-signin')) customElements.define('latchkey-signin', LatchkeySignin);
if (!customElements.get('latchkey-account')) customElements.define('latchkey-account', LatchkeyAccount);
if (!customElements.get('latchkey-gate')) customElements.define('latchkey-gate', LatchkeyGate);
