/* Siren panel: kept current over SSE. A siren's `device` event, a `node` event (a node going offline makes its
   sirens' state unknown) or an `alert` event makes the page fetch itself again and swap the panel in, so the
   server draws everything. A siren that starts being silent during an alert is announced to screen readers.
   Plain ES2020, no build step. */
(function () {
  'use strict';
  var V = window.Varta;
  var data = V.readJson('page-data') || {};
  var texts = data.texts || {};
  var silent = {};
  (data.silent || []).forEach(function (key) { silent[key] = true; });
  var busy = false;
  var again = false;
  var timer = null;

  function tx(key, params) {
    var s = Object.prototype.hasOwnProperty.call(texts, key) ? texts[key] : key;
    Object.keys(params || {}).forEach(function (k) { s = s.split('%(' + k + ')s').join(String(params[k])); });
    return s;
  }

  function announceSilent(root) {
    var now = {};
    root.querySelectorAll('.siren.is-silent').forEach(function (el) {
      var key = el.getAttribute('data-node-id') + '/' + el.getAttribute('data-device-id');
      now[key] = true;
      if (!silent[key]) {
        var name = el.querySelector('.siren__name');
        V.announce(tx('siren_silent', { name: name ? name.textContent : key }));
      }
    });
    silent = now;
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.pathname, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.redirected && r.url.indexOf('/login') !== -1) { window.location.assign(r.url); throw new Error('signed out'); }
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('siren-panel');
        var current = document.getElementById('siren-panel');
        if (!fresh || !current) return;
        current.replaceWith(fresh);
        V.refreshTimes(fresh);
        announceSilent(fresh);
      })
      .catch(function () { /* the next event or the resync tries again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  function schedule() {
    if (timer !== null) return;
    timer = window.setTimeout(function () { timer = null; refresh(); }, 150);
  }

  V.connectLive({
    device: function (d) { if (d && d.device && d.device.kind === 'siren') schedule(); },
    node: schedule,
    alert: schedule
  }, refresh);
  // Ages and the "since" of alerts move on by themselves; a slow full refresh also catches anything missed.
  window.setInterval(schedule, 60000);
})();
