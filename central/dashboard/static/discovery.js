/* Discovery inbox: adopt (credentials go to the API once, sealed there to the node's key), ignore, search again. */
(function () {
  'use strict';
  var V = window.Varta;
  var result = document.getElementById('discovery-result');

  function show(text, ok) {
    result.hidden = false;
    result.className = 'notice ' + (ok ? 'notice--ok' : 'notice--error');
    result.textContent = text;
  }

  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (json) {
        if (!r.ok) {
          var detail = typeof json.detail === 'string' ? json.detail
            : Array.isArray(json.detail) ? json.detail.map(function (d) { return (d.loc || []).slice(-1)[0] + ': ' + d.msg; }).join('; ')
            : 'HTTP ' + r.status;
          throw new Error(detail);
        }
        return json;
      });
    });
  }

  function fail(err) { show(V.t('cam_failed', { reason: err.message }), false); }

  document.querySelectorAll('form[data-adopt]').forEach(function (form) {
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = form.elements;
      var body = { name: f.name.value.trim(), position: f.position.value.trim() };
      if (f.site.value.trim()) body.site = f.site.value.trim();
      if (f.username.value) body.username = f.username.value;
      if (f.password.value) body.password = f.password.value;
      var button = form.querySelector('button[type=submit]');
      button.disabled = true;
      post('/api/v1/discovery/' + form.getAttribute('data-adopt') + '/adopt', body)
        .then(function () {
          f.password.value = '';
          show(V.t('cam_adopted'), true);
          window.setTimeout(function () { window.location.reload(); }, 800);
        })
        .catch(function (err) { button.disabled = false; fail(err); });
    });
  });

  function act(attr, path) {
    document.querySelectorAll('[' + attr + ']').forEach(function (btn) {
      btn.addEventListener('click', function () {
        btn.disabled = true;
        post(path(btn.getAttribute(attr)), {})
          .then(function () { window.location.reload(); })
          .catch(function (err) { btn.disabled = false; fail(err); });
      });
    });
  }
  act('data-ignore', function (id) { return '/api/v1/discovery/' + id + '/ignore'; });
  act('data-unignore', function (id) { return '/api/v1/discovery/' + id + '/unignore'; });
  act('data-probe', function (node) { return '/api/v1/nodes/' + encodeURIComponent(node) + '/discovery'; });

  V.connectLive({
    discovery: function () {
      // New sightings: reload unless the operator is typing into an adoption form.
      if (!document.querySelector('details.adopt[open]')) window.location.reload();
    }
  }, null);
})();
