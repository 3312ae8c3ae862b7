// Passkeys (WebAuthn) for Portcullis: the site's one script, loaded only by the pages with
// passkey buttons (sign-in, its second step, re-authentication, the account's passkeys).
//
// Progressive enhancement: every passkey block (`[data-passkey]`) is `hidden` in the HTML
// and shown here only where the browser can use passkeys; without JavaScript the pages
// work as before, minus the passkey buttons.
//
// A block holds a form with a hidden `credential` field. Sending the form (its button, or
// Enter) first asks the server for the ceremony's options (`data-options`, JSON), then the
// browser for a passkey, and only then sends the form with the answer (JSON) in that
// field: the server answers with a page or a redirect, exactly as for a password.
'use strict';

(() => {
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  const toBytes = (text) => {
    const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  };

  const toText = (buffer) => {
    let binary = '';
    for (const byte of new Uint8Array(buffer)) {
      binary += String.fromCharCode(byte);
    }
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };

  const withIds = (list) => (list || []).map((c) => ({ ...c, id: toBytes(c.id) }));

  const creationOptions = ({ publicKey }) => ({
    ...publicKey,
    challenge: toBytes(publicKey.challenge),
    user: { ...publicKey.user, id: toBytes(publicKey.user.id) },
    excludeCredentials: withIds(publicKey.excludeCredentials),
  });

  const requestOptions = ({ publicKey }) => ({
    ...publicKey,
    challenge: toBytes(publicKey.challenge),
    allowCredentials: withIds(publicKey.allowCredentials),
  });

  const registration = (credential) => ({
    id: credential.id,
    rawId: toText(credential.rawId),
    type: credential.type,
    response: {
      attestationObject: toText(credential.response.attestationObject),
      clientDataJSON: toText(credential.response.clientDataJSON),
      transports: credential.response.getTransports ? credential.response.getTransports() : [],
    },
    clientExtensionResults: credential.getClientExtensionResults(),
  });

  const assertion = (credential) => ({
    id: credential.id,
    rawId: toText(credential.rawId),
    type: credential.type,
    response: {
      authenticatorData: toText(credential.response.authenticatorData),
      clientDataJSON: toText(credential.response.clientDataJSON),
      signature: toText(credential.response.signature),
      userHandle: credential.response.userHandle ? toText(credential.response.userHandle) : null,
    },
    clientExtensionResults: credential.getClientExtensionResults(),
  });

  const failure = (error) => {
    switch (error && error.name) {
      case 'NotAllowedError':
        return 'No passkey was used: it was cancelled, timed out, or this device has none for this site.';
      case 'InvalidStateError':
        return 'This device already has a passkey for your account.';
      case 'SecurityError':
        return 'This browser does not allow passkeys on this address.';
      default:
        return 'Something went wrong with the passkey. Reload the page and try again.';
    }
  };

  const run = async (block, form, say) => {
    const origin = block.dataset.origin;
    if (window.location.origin !== origin) {
      say(`Passkeys work only at ${origin}. Open the site there to use one.`);
      return;
    }
    const answer = await fetch(block.dataset.options, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
      body: new URLSearchParams({ csrf: form.elements.csrf.value }),
    });
    const json = await answer.json().catch(() => ({}));
    if (answer.status === 401 && json.reauth_url) {
      // Adding a passkey needs a recent sign-in: confirm it's you, then come back here.
      const back = window.location.pathname + window.location.search;
      window.location.assign(`${json.reauth_url}?next=${encodeURIComponent(back)}`);
      return;
    }
    if (!answer.ok) {
      say(json.message || 'Something went wrong. Reload the page and try again.');
      return;
    }
    const credential = block.dataset.passkey === 'create'
      ? registration(await navigator.credentials.create({ publicKey: creationOptions(json) }))
      : assertion(await navigator.credentials.get({ publicKey: requestOptions(json) }));
    form.elements.credential.value = JSON.stringify(credential);
    // "Keep me signed in" is a box of the password form; the passkey form sends its state.
    for (const copy of form.querySelectorAll('[data-remember-from]')) {
      const box = document.getElementById(copy.dataset.rememberFrom);
      copy.value = box && box.checked ? 'on' : '';
    }
    form.submit();
  };

  for (const block of document.querySelectorAll('[data-passkey]')) {
    const form = block.querySelector('form');
    const status = block.querySelector('[data-passkey-status]');
    const button = form.querySelector('button');
    const say = (text) => {
      status.textContent = text;
      status.hidden = !text;
    };
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      say('');
      button.disabled = true;
      run(block, form, say)
        .catch((error) => say(failure(error)))
        .finally(() => {
          button.disabled = false;
        });
    });
    block.hidden = false;
  }
})();
