// Latchkey messages: one sentence for every state a person can reach, saying what happened
// and what to do next. Code keeps using the reason codes (`check().reason`, `error.code`);
// people read these. Pass `messages` to createLatchkey to replace any of them (to translate,
// or to fit the app's voice): a string, or a function of the context it is given.

/**
 * @typedef {string | ((context: Record<string, any>) => string)} Message
 * @typedef {Record<string, Message>} Messages
 */

/** @type {Readonly<Messages>} */
export const MESSAGES = Object.freeze({
  // ---- verdicts of check(), by reason code
  ok: 'Premium is unlocked on this device.',
  'signed out': 'Sign in with a passkey to use premium on this device. New here? Create a passkey; it takes a few seconds.',
  'no license': 'Premium is not on this device yet. Stay online for a moment and it will be fetched.',
  'signature invalid': 'The license on this device could not be verified, so it is not used. Connect to the internet to get a new one.',
  expired: 'Your offline license has expired. Connect to the internet to renew it.',
  'not yet valid': "Your license is not valid yet: this device's clock may be wrong. Check the date and time in your settings.",
  'clock moved back': "This device's clock is behind the last time it was trusted. Set the date and time correctly, or connect to the internet.",
  revoked: 'Premium was withdrawn from this license. Connect to the internet; if it does not come back, contact the app’s support.',
  'bound to another device': 'This license belongs to another device. Sign in here while online to get a license for this device.',
  'older license': 'A newer license was already used on this device, so this older one is refused. Connect to the internet to get a fresh one.',
  'missing entitlement': 'Your account does not include premium. Upgrade, or sign in with the account that has it.',
  'status unknown': 'Premium needs a recent check with the service. Connect to the internet for a moment.',
  'wrong issuer': 'The license on this device was made by another service. Sign in again while online.',
  'wrong audience': 'The license on this device was made for another app. Sign in again while online.',
  'invalid license': 'The license on this device is damaged. Connect to the internet to get a new one.',
  'check-in required': 'This device has been offline longer than your plan allows. Connect to the internet once to keep using premium.',
  checking: 'Checking the license on this device…',

  // ---- unlockWithPasskey() results (an offline check that the passkey holder is here)
  'unlock.ok': ({ username }) => `Passkey confirmed${username ? ` for ${username}` : ''}.`,
  'unlock.passkey not recognised': 'That passkey is not one of this account’s. Use a passkey you signed in with.',
  'unlock.passkey check failed': 'The passkey’s answer could not be read. Try again.',
  'unlock.user not verified': 'The passkey did not check it was you (no PIN, fingerprint or face). Try again and confirm on your device.',
  'unlock.signature invalid': 'That passkey’s answer does not match this account’s passkey. Use the passkey you signed in with.',
  'unlock.cancelled': 'The passkey check was cancelled. Nothing was unlocked.',

  // ---- connection, as one word (badge) and as a sentence
  'connection.online': 'Online',
  'connection.offline': 'Offline',
  'connection.unreachable': 'Service unreachable',
  'connection.error': 'Service error',
  'connection.unknown': 'Checking connection…',
  'connection.online.sentence': 'Connected to the service.',
  'connection.offline.sentence': "You're offline. What is on this device keeps working; changes wait until you're back online.",
  'connection.unreachable.sentence':
    "The service can't be reached (the connection is there but nothing answers). What is on this device keeps working; it tries again by itself.",
  'connection.error.sentence': 'The service answered with an error. It tries again by itself; if this lasts, contact the app’s support.',
  'connection.unknown.sentence': 'Checking the connection to the service…',
  'connection.no-status': 'Online, but the revocation list could not be loaded',
  'connection.no-status.sentence':
    'The service answered, but its revocation list did not come (a blocker or a network rule may stop it). Premium keeps working until this device must check in; allow the list to load to keep it going.',
  'license.expires': ({ date }) => `License valid until ${date}.`,
  'license.none': 'No license on this device.',

  // ---- errors of requests and passkey prompts, by LatchkeyError code
  offline: "You're offline. Connect to the internet and try again.",
  unreachable: "The service didn't answer in time. Check your connection and try again.",
  'service-error': ({ status }) => `The service answered with an error${status ? ` (${status})` : ''}. Try again in a moment.`,
  cancelled: 'The passkey request was cancelled. Nothing was changed.',
  'no-passkey': ({ username }) =>
    `No passkey for “${username}” answered on this device. Check the username, or leave it empty and pick a saved passkey.`,
  'no-passkey-any': 'No passkey for this service answered on this device. Create one, or use a device that has one.',
  'passkey-exists': 'This device already has a passkey for this account. Sign in with it instead.',
  'passkey-blocked': 'Passkeys are not allowed on this address. Open the app at its usual address.',
  'passkey-unsupported': 'This device cannot make a passkey of a kind the service accepts. Try another device or a password manager that keeps passkeys.',
  'no-webauthn': 'This browser does not support passkeys. Update it, or use another browser.',
  'passkey-failed': ({ message }) => `The passkey request failed (${message}). Try again.`,
  'unknown-credential': 'This passkey no longer works here: it was removed or revoked. Use another passkey.',
  'step-up': "Confirm it's you: use one of your passkeys for this account.",
  'step-up-cancelled': 'Cancelled: nothing was changed.',
  storage: ({ message }) =>
    `This browser cannot keep a device key, so offline licenses cannot work here (${message}). Private browsing windows often block this.`,

  // ---- progress and results shown by the components
  'progress.signin': 'Waiting for your passkey…',
  'progress.register': 'Creating your passkey…',
  'progress.add': 'Creating another passkey…',
  'progress.step-up': 'Waiting for your passkey to confirm…',
  'progress.hint': 'Follow your browser’s prompt. You can cancel.',
  'done.signin': ({ username }) => `Signed in as ${username}.`,
  'done.register': ({ username }) => `Passkey created. Signed in as ${username}.`,
  'done.signout': 'Signed out.',
  'done.signout-offline': "Signed out on this device. You're offline: the service is told as soon as you're back online.",
  'done.signout-everywhere': 'Signed out on every device.',
  'done.added': 'Passkey added.',
  'done.renamed': ({ name }) => `Renamed to ${name}.`,
  'done.removed': ({ name }) => `Removed ${name}.`,
  'done.cancelled': 'Cancelled. Nothing was changed.',
  'need.username': 'Enter a username to create a passkey.',
  'need.name': 'Give the passkey a name.',
  'offline.signin': "Signing in needs a connection. What is on this device keeps working; try again when you're online.",
  'offline.account': "You can manage your passkeys when you're back online.",
  'last-passkey': 'This is your only passkey, so it cannot be removed. Add another passkey first.',
  'recovery.lost': 'No recovery codes? Ask the app’s support for a recovery link, then open it on this device.',
  'recovery.code-hint': 'Enter your username above and one of your recovery codes. Each code works once.',
  'recovery.link': 'This link adds a new passkey to your account. It works once.',
  'need.recovery': 'Enter your username and one of your recovery codes.',
  'progress.recover': 'Creating your new passkey…',
  'done.recovered': ({ username }) => `Passkey added. Signed in as ${username}.`,
  'recovery.codes-left': ({ left }) =>
    left ? `${left} unused recovery code${left === 1 ? '' : 's'}. Making new ones replaces them.` : 'No recovery codes yet: make some in case you lose your passkeys.',
  'recovery.codes-made': 'Recovery codes made. Keep them somewhere safe: they are shown only now.',
  'recovery.codes-keep': 'Keep these codes somewhere safe: they are shown only now. Each works once.',
  'devices.none': 'No devices yet: a device appears here when it gets an offline license.',
  'devices.about': 'Each device that got an offline license. Removing one revokes its licenses and signs it out.',
  'done.device-removed': ({ name }) => `Removed ${name}. Its licenses are revoked.`,
});

/**
 * Picks and renders one message: the app's own (`overrides`) first, then the default.
 * Unknown keys fall back to `fallback`, or to the key itself, so nothing is ever blank.
 * @param {Messages | undefined} overrides
 * @param {string} key
 * @param {Record<string, any>} [context]
 * @param {string} [fallback]
 * @returns {string}
 */
export function renderMessage(overrides, key, context = {}, fallback) {
  const own = overrides && Object.hasOwn(overrides, key) ? overrides[key] : undefined;
  const chosen = own ?? (Object.hasOwn(MESSAGES, key) ? MESSAGES[key] : undefined);
  if (chosen === undefined) return fallback ?? key;
  return typeof chosen === 'function' ? String(chosen(context)) : String(chosen);
}
