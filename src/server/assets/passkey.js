// Passkey buttons: registration and sign-in through WebAuthn, for pages whose
// Content-Security-Policy allows scripts and fetches only from 'self'. No
// inline script, no eval, no dependency. The page marks up, the script wires:
//
//   <button type="button" data-passkey="register"
//           data-start="/api/v1/mfa/passkeys/register/start"
//           data-finish="/api/v1/mfa/passkeys/register/finish"
//           data-name-input="passkey-name" data-password-input="passkey-password"
//           data-done="/mfa">Add a passkey</button>
//   <button type="button" data-passkey="sign-in"
//           data-start="..." data-finish="..." data-rd="https://app/...">Sign in with a passkey</button>
//   <p data-passkey-error hidden></p>
//
// Both POST JSON to data-start ({}; for a register button with
// data-password-input, {"password": "<that input's value>"} when it is
// filled, the proof a session may need to add a factor) and get WebAuthn
// options back ({"publicKey": {...}}, byte fields in base64url), run the
// browser's ceremony, and POST its result to data-finish:
//   register: {"name": "<the named input's value>", "credential": {...}},
//             then go to data-done (or the answer's "redirect");
//   sign-in:  {"credential": {...}, "rd": "<data-rd>"},
//             then go to the answer's "redirect".
// A failed request answers {"error": "..."}; its text is shown in the
// nearest [data-passkey-error] (role=alert), never in a dialog.
(function () {
  'use strict';

  function fromB64u(s) {
    s = String(s).replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    var bin = atob(s);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  }

  function toB64u(buf) {
    if (!buf) return null;
    var bytes = new Uint8Array(buf);
    var s = '';
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  // The server leaves out absent options, but a null would make the browser
  // refuse the whole request; drop any.
  function dropNulls(o) {
    Object.keys(o).forEach(function (k) {
      if (o[k] === null) delete o[k];
    });
    return o;
  }

  function descriptors(list) {
    return (list || []).map(function (c) {
      var d = dropNulls(Object.assign({}, c));
      d.id = fromB64u(c.id);
      return d;
    });
  }

  function creationOptions(answer) {
    var pk = dropNulls(Object.assign({}, answer.publicKey));
    pk.challenge = fromB64u(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: fromB64u(pk.user.id) });
    if (pk.excludeCredentials) pk.excludeCredentials = descriptors(pk.excludeCredentials);
    if (pk.authenticatorSelection) pk.authenticatorSelection = dropNulls(Object.assign({}, pk.authenticatorSelection));
    return { publicKey: pk };
  }

  function requestOptions(answer) {
    var pk = dropNulls(Object.assign({}, answer.publicKey));
    pk.challenge = fromB64u(pk.challenge);
    if (pk.allowCredentials) pk.allowCredentials = descriptors(pk.allowCredentials);
    // A button asks with the browser's modal prompt: any "mediation" in the
    // answer is for an autofill field and is not passed on.
    return { publicKey: pk };
  }

  function extensions(cred) {
    try {
      return cred.getClientExtensionResults() || {};
    } catch (e) {
      return {};
    }
  }

  function registrationJson(cred) {
    var r = cred.response;
    var json = {
      id: cred.id,
      rawId: toB64u(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: toB64u(r.attestationObject),
        clientDataJSON: toB64u(r.clientDataJSON)
      },
      extensions: extensions(cred)
    };
    if (typeof r.getTransports === 'function') json.response.transports = r.getTransports();
    return json;
  }

  function assertionJson(cred) {
    var r = cred.response;
    return {
      id: cred.id,
      rawId: toB64u(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: toB64u(r.authenticatorData),
        clientDataJSON: toB64u(r.clientDataJSON),
        signature: toB64u(r.signature),
        userHandle: r.userHandle && r.userHandle.byteLength ? toB64u(r.userHandle) : null
      },
      extensions: extensions(cred)
    };
  }

  // A failure to show as it is: the server's own message.
  function Shown(message) {
    this.message = message;
  }

  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.text().then(function (text) {
        var json = null;
        try {
          json = text ? JSON.parse(text) : {};
        } catch (e) {
          json = null;
        }
        if (!res.ok) {
          throw new Shown(json && typeof json.error === 'string'
            ? json.error
            : 'The server refused the passkey request (status ' + res.status + ').');
        }
        if (json === null) throw new Shown('The server sent an answer that is not JSON.');
        return json;
      });
    });
  }

  function explain(err) {
    if (err instanceof Shown) return err.message;
    switch (err && err.name) {
      case 'NotAllowedError':
      case 'AbortError':
        return 'The passkey request was cancelled or timed out.';
      case 'InvalidStateError':
        return 'This authenticator already holds a passkey for this account.';
      case 'SecurityError':
        return 'Passkeys are not available at this address.';
      case 'NotSupportedError':
        return 'This authenticator cannot make a passkey for this site.';
      case 'TypeError':
        return 'The passkey request could not be sent. Check your connection and try again.';
      default:
        return 'The passkey request failed.';
    }
  }

  function errorBox(button) {
    for (var el = button; el; el = el.parentElement) {
      var box = el.querySelector('[data-passkey-error]');
      if (box) return box;
    }
    return null;
  }

  function showError(button, message) {
    var box = errorBox(button);
    if (!box) return;
    box.setAttribute('role', 'alert');
    box.textContent = message;
    box.hidden = false;
  }

  function clearError(button) {
    var box = errorBox(button);
    if (!box) return;
    box.textContent = '';
    box.hidden = true;
  }

  function go(url) {
    if (url) window.location.assign(url);
  }

  // Recovery codes made with a first passkey are shown once, in the
  // page's [data-passkey-codes] block, before going on.
  function showCodes(button, codes, next) {
    var block = null;
    for (var el = button; el && !block; el = el.parentElement) {
      block = el.querySelector('[data-passkey-codes]');
    }
    if (!block) return false;
    var list = block.querySelector('ol');
    codes.forEach(function (c) {
      var li = document.createElement('li');
      var code = document.createElement('code');
      code.textContent = c;
      li.appendChild(code);
      list.appendChild(li);
    });
    var link = block.querySelector('[data-passkey-continue]');
    if (link && next) link.setAttribute('href', next);
    block.hidden = false;
    button.hidden = true;
    if (link) link.focus();
    return true;
  }

  function register(button) {
    var input = button.dataset.nameInput ? document.getElementById(button.dataset.nameInput) : null;
    var name = input ? input.value.trim() : '';
    var password = button.dataset.passwordInput ? document.getElementById(button.dataset.passwordInput) : null;
    var start = password && password.value ? { password: password.value } : {};
    return post(button.dataset.start, start)
      .then(function (answer) {
        return navigator.credentials.create(creationOptions(answer));
      })
      .then(function (cred) {
        var body = { name: name, credential: registrationJson(cred) };
        if (button.dataset.rd) body.rd = button.dataset.rd;
        return post(button.dataset.finish, body);
      })
      .then(function (answer) {
        var next = answer.redirect || button.dataset.done;
        if (answer.recovery_codes && answer.recovery_codes.length &&
            showCodes(button, answer.recovery_codes, next)) {
          return;
        }
        go(button.dataset.done || answer.redirect);
      });
  }

  function signIn(button) {
    return post(button.dataset.start, {})
      .then(function (answer) {
        return navigator.credentials.get(requestOptions(answer));
      })
      .then(function (cred) {
        var body = { credential: assertionJson(cred) };
        if (button.dataset.rd) body.rd = button.dataset.rd;
        return post(button.dataset.finish, body);
      })
      .then(function (answer) {
        go(answer.redirect);
      });
  }

  var ceremonies = { register: register, 'sign-in': signIn };

  function wire(button) {
    var ceremony = ceremonies[button.dataset.passkey];
    if (!ceremony) return;
    if (!window.PublicKeyCredential || !navigator.credentials) {
      button.disabled = true;
      showError(button, 'This browser does not support passkeys.');
      return;
    }
    button.addEventListener('click', function (event) {
      event.preventDefault();
      if (button.disabled) return;
      button.disabled = true;
      button.setAttribute('aria-busy', 'true');
      clearError(button);
      ceremony(button)
        .catch(function (err) {
          showError(button, explain(err));
        })
        .then(function () {
          button.disabled = false;
          button.removeAttribute('aria-busy');
        });
    });
  }

  function start() {
    var buttons = document.querySelectorAll('[data-passkey]');
    for (var i = 0; i < buttons.length; i++) wire(buttons[i]);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
