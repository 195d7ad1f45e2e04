// The Latchkey demo PWA, built on the drop-in components: <latchkey-signin>,
// <latchkey-account> and <latchkey-gate>. The two premium buttons show the client API that the
// components leave to the app: an offline passkey check and a DPoP-bound premium call.

import { client } from './latchkey-elements.js';

const HERE = new URL('./', import.meta.url);
const latchkey = client();
const $ = (id) => document.getElementById(id);
const main = $('main');

// One busy flag for the page: set while any component (or button here) is at work.
let busy = 0;
function setBusy(on) {
  busy = Math.max(0, busy + (on ? 1 : -1));
  main.setAttribute('aria-busy', String(busy > 0));
}
main.addEventListener('latchkey-busy', (event) => setBusy(event.detail));

async function run(button, output, action) {
  setBusy(true);
  button.disabled = true;
  output.textContent = '';
  try {
    const [text, ok] = await action();
    output.textContent = text;
    output.classList.toggle('ok', ok);
  } catch (error) {
    output.textContent = latchkey.describe(error);
    output.classList.remove('ok');
  } finally {
    button.disabled = false;
    setBusy(false);
  }
}

$('unlock-button').addEventListener('click', (event) =>
  run(event.currentTarget, $('unlock-result'), async () => {
    const result = await latchkey.unlockWithPasskey();
    if (result.ok) return [latchkey.message('unlock.ok', { username: result.username }), true];
    // A license reason (the check failed first) or an unlock reason, as a sentence.
    return [latchkey.message(`unlock.${result.reason}`, {}, latchkey.message(result.reason)), false];
  }),
);

$('premium-button').addEventListener('click', (event) =>
  run(event.currentTarget, $('premium-result'), async () => {
    const body = await latchkey.callPremium();
    return [`Premium API says: ${body.message ?? JSON.stringify(body)}`, true];
  }),
);

const first = document.querySelector('latchkey-gate');
first.addEventListener('latchkey-verdict', () => performance.mark('latchkey:verdict'), { once: true });

if ('serviceWorker' in navigator) {
  navigator.serviceWorker
    .register(new URL('sw.js', HERE), { scope: HERE.pathname, type: 'classic' })
    .catch((error) => console.warn('Offline support is off: the service worker did not register.', error));
}
