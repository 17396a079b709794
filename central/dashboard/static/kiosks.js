/* Kiosk list: kept current over SSE (a kiosk's `device` event, a `kiosk.*` event, a `node` or an `alert` event makes
   the page fetch itself again and swap the list in, so the server draws everything), and "Take screenshot": ask the
   node, then look for a newer screenshot every few seconds. Plain ES2020, no build step. */
(function () {
  'use strict';
  var V = window.Varta;
  var data = V.readJson('page-data') || {};
  var texts = data.texts || {};
  var POLL_MS = 3000;
  var POLL_TRIES = 10;
  var busy = false;
  var again = false;
  var timer = null;

  function tx(key, params) {
    var s = Object.prototype.hasOwnProperty.call(texts, key) ? texts[key] : key;
    Object.keys(params || {}).forEach(function (k) { s = s.split('%(' + k + ')s').join(String(params[k])); });
    return s;
  }

  function card(nodeId) {
    return document.querySelector('.kiosk[data-node-id="' + CSS.escape(nodeId) + '"]');
  }
  function field(nodeId, name) {
    var c = card(nodeId);
    return c ? c.querySelector('[data-field="' + name + '"]') : null;
  }
  function say(nodeId, text) { var el = field(nodeId, 'shot-msg'); if (el) el.textContent = text; }

  function shotUrl(nodeId) { return '/api/v1/kiosk/kiosks/' + encodeURIComponent(nodeId) + '/screenshot'; }

  function showShot(nodeId, takenAt) {
    var img = field(nodeId, 'shot');
    if (!img) return;
    img.src = shotUrl(nodeId) + '?v=' + encodeURIComponent(takenAt);
    img.hidden = false;
    var none = field(nodeId, 'noshot');
    if (none) none.hidden = true;
    var time = field(nodeId, 'shot-time');
    if (time) time.hidden = false;
    V.setAgo(field(nodeId, 'shot-age'), takenAt);
  }

  /** The X-Taken-At of the newest screenshot, or '' when there is none. */
  function latestTaken(nodeId) {
    return fetch(shotUrl(nodeId), { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      return r.ok ? r.headers.get('x-taken-at') || '' : '';
    });
  }

  function takeScreenshot(btn) {
    var nodeId = btn.getAttribute('data-screenshot');
    var before = (field(nodeId, 'shot-age') || { getAttribute: function () { return ''; } }).getAttribute('datetime') || '';
    btn.disabled = true;
    fetch(shotUrl(nodeId), { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body: '{}' })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (json) {
          if (!r.ok) throw new Error(typeof json.detail === 'string' ? json.detail : 'HTTP ' + r.status);
        });
      })
      .then(function () {
        say(nodeId, tx('shot_asking'));
        var tries = 0;
        function poll() {
          tries += 1;
          latestTaken(nodeId).then(function (taken) {
            if (taken && Date.parse(taken) > (Date.parse(before) || 0)) {
              showShot(nodeId, taken);
              say(nodeId, tx('shot_new'));
              btn.disabled = false;
            } else if (tries < POLL_TRIES) {
              window.setTimeout(poll, POLL_MS);
            } else {
              say(nodeId, tx('shot_none'));
              btn.disabled = false;
            }
          }).catch(function () { if (tries < POLL_TRIES) window.setTimeout(poll, POLL_MS); else btn.disabled = false; });
        }
        window.setTimeout(poll, POLL_MS);
      })
      .catch(function (err) {
        say(nodeId, tx('failed', { reason: err.message }));
        btn.disabled = false;
      });
  }

  document.addEventListener('click', function (ev) {
    var btn = ev.target.closest && ev.target.closest('[data-screenshot]');
    if (btn && !btn.disabled) takeScreenshot(btn);
  });

  function refresh() {
    if (document.querySelector('[data-screenshot]:disabled:not([title])')) { schedule(); return; }  // a screenshot is on its way
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.pathname, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.redirected && r.url.indexOf('/login') !== -1) { window.location.assign(r.url); throw new Error('signed out'); }
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('kiosk-panel');
        var current = document.getElementById('kiosk-panel');
        if (!fresh || !current) return;
        // Keep the screenshots already shown (same URL): no fetching every picture again on every refresh.
        fresh.querySelectorAll('.kiosk img[data-field="shot"]').forEach(function (img) {
          var id = img.closest('.kiosk').getAttribute('data-node-id');
          var old = current.querySelector('.kiosk[data-node-id="' + CSS.escape(id) + '"] img[data-field="shot"]');
          if (old && old.getAttribute('src') === img.getAttribute('src')) img.replaceWith(old);
        });
        current.replaceWith(fresh);
        V.refreshTimes(fresh);
      })
      .catch(function () { /* the next event or the resync tries again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; schedule(); }
      });
  }

  function schedule() {
    if (timer !== null) return;
    timer = window.setTimeout(function () { timer = null; refresh(); }, 500);
  }

  V.connectLive({
    device: function (d) { if (d && d.device && d.device.kind === 'kiosk') schedule(); },
    event: function (e) { if (e && typeof e.kind === 'string' && e.kind.indexOf('kiosk.') === 0) schedule(); },
    node: schedule,
    alert: schedule
  }, refresh);
  window.setInterval(schedule, 60000);
})();
