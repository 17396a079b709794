/* Incidents: the list and one incident stay current over SSE (`incident` events: the page is fetched again and its
   lists swapped in, so the server draws everything), acknowledge and notes go to the incident API, and a new
   incident of severity warning or worse plays an alarm (WebAudio oscillator, no audio files) for dispatchers.
   Browsers keep audio locked until the user clicks: the page says so and any click unlocks it.
   Plain ES2020, no build step. */
(function () {
  'use strict';
  var V = window.Varta;
  var data = V.readJson('page-data') || {};
  var texts = data.texts || {};
  var rank = data.severity_rank || { info: 0, warning: 1, error: 2, critical: 3 };
  var soundFrom = typeof data.sound_from === 'number' ? data.sound_from : 1;
  var incidentId = typeof data.incident_id === 'number' ? data.incident_id : null;
  var known = {};
  (data.known || []).forEach(function (id) { known[id] = true; });

  function tx(key, params) {
    var s = Object.prototype.hasOwnProperty.call(texts, key) ? texts[key] : key;
    Object.keys(params || {}).forEach(function (k) { s = s.split('%(' + k + ')s').join(String(params[k])); });
    return s;
  }

  // ------------------------------------------------------------------------------------------------ sound

  var STORE = 'varta.incidents.sound';
  var soundBox = data.sound ? document.getElementById('sound') : null;
  var audioCtx = null;

  function soundWanted() {
    try { return window.localStorage.getItem(STORE) !== 'off'; } catch (e) { return true; }
  }
  function rememberSound(on) {
    try { window.localStorage.setItem(STORE, on ? 'on' : 'off'); } catch (e) { /* private mode: not kept */ }
  }
  function audio() {
    if (audioCtx) return audioCtx;
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    try { audioCtx = new Ctx(); } catch (e) { return null; }
    audioCtx.onstatechange = showSound;
    return audioCtx;
  }
  function showSound() {
    if (!soundBox) return;
    var state = !soundWanted() ? 'off' : (audioCtx && audioCtx.state === 'running') ? 'on' : 'blocked';
    soundBox.setAttribute('data-sound', state);
    soundBox.querySelectorAll('[data-show]').forEach(function (el) {
      el.hidden = el.getAttribute('data-show') !== state;
    });
  }
  function unlock() {
    var c = audio();
    if (c && c.state !== 'running') c.resume().then(showSound, showSound);
    showSound();
  }

  /** The alarm: two-tone beeps, one for warning, two for error, three for critical. */
  function alarm(severity, force) {
    if (!soundBox || (!force && !soundWanted())) return;
    var c = audio();
    if (!c) return;
    if (c.state !== 'running') c.resume().catch(function () { /* still locked: the page shows it */ });
    var beeps = severity === 'critical' ? 3 : severity === 'error' ? 2 : 1;
    var t = c.currentTime + 0.05;
    for (var i = 0; i < beeps; i++) {
      [[988, 0], [740, 0.2]].forEach(function (tone) {
        var osc = c.createOscillator();
        var gain = c.createGain();
        osc.type = 'square';
        osc.frequency.value = tone[0];
        gain.gain.setValueAtTime(0.0001, t + tone[1]);
        gain.gain.exponentialRampToValueAtTime(0.2, t + tone[1] + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + tone[1] + 0.18);
        osc.connect(gain);
        gain.connect(c.destination);
        osc.start(t + tone[1]);
        osc.stop(t + tone[1] + 0.2);
      });
      t += 0.55;
    }
    soundBox.setAttribute('data-beeps', String(Number(soundBox.getAttribute('data-beeps') || 0) + 1));
    soundBox.setAttribute('data-last-alarm', severity + (c.state === 'running' ? '' : ' (locked)'));
  }

  if (soundBox) {
    soundBox.addEventListener('click', function (ev) {
      var button = ev.target.closest('[data-sound-action]');
      if (!button) return;
      var action = button.getAttribute('data-sound-action');
      if (action === 'mute') { rememberSound(false); showSound(); return; }
      if (action === 'enable') { rememberSound(true); unlock(); return; }
      if (action === 'test') { unlock(); alarm('warning', true); }
    });
    // Any click or key on the page counts as the gesture the browser waits for.
    ['pointerdown', 'keydown'].forEach(function (name) {
      document.addEventListener(name, function () { if (soundWanted()) unlock(); }, true);
    });
    window.addEventListener('storage', function (ev) { if (ev.key === STORE) showSound(); });
    if (soundWanted()) audio();
    showSound();
  }

  // ------------------------------------------------------------------------------------------------ live

  var region = incidentId !== null ? 'incident-main' : 'incident-lists';
  var busy = false;
  var again = false;
  var timer = null;

  function openDetails(root) {
    var ids = [];
    root.querySelectorAll('[data-incident-id] details[open]').forEach(function (d) {
      ids.push(d.closest('[data-incident-id]').getAttribute('data-incident-id'));
    });
    return ids;
  }

  /** Fetch this page again and swap in its live part; new open incidents found there raise the alarm too. */
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.pathname + window.location.search, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.redirected && r.url.indexOf('/login') !== -1) { window.location.assign(r.url); throw new Error('signed out'); }
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var fresh = doc.getElementById(region);
        if (doc.title) document.title = doc.title;  // "(2) Incidents": unacknowledged ones show in the tab
        var current = document.getElementById(region);
        if (!fresh || !current) return;
        var expanded = openDetails(current);
        current.replaceWith(fresh);
        expanded.forEach(function (id) {
          var d = fresh.querySelector('[data-incident-id="' + id + '"] details');
          if (d) d.open = true;
        });
        V.refreshTimes(fresh);
        if (incidentId === null) catchUp(fresh);
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

  /** Open incidents on the page that this page has not seen yet (e.g. while the stream was down). */
  function catchUp(root) {
    var worst = null;
    root.querySelectorAll('#open-incidents [data-incident-id]').forEach(function (el) {
      var id = Number(el.getAttribute('data-incident-id'));
      if (known[id]) return;
      known[id] = true;
      var sev = el.getAttribute('data-severity');
      if ((rank[sev] || 0) >= soundFrom && (worst === null || rank[sev] > rank[worst])) worst = sev;
    });
    if (worst !== null) alarm(worst);
  }

  function onIncident(inc) {
    if (!inc || typeof inc.id !== 'number') return;
    if (incidentId !== null) {
      if (inc.id === incidentId) schedule();
      return;
    }
    var isNew = !known[inc.id];
    known[inc.id] = true;
    if (isNew && inc.open && (rank[inc.severity] || 0) >= soundFrom) {
      alarm(inc.severity);
      V.announce(tx('new_incident', { title: inc.title || '' }));
    } else if (!inc.open && !isNew) {
      V.announce(tx('incident_closed', { title: inc.title || '' }));
    }
    schedule();
  }

  V.connectLive({ incident: onIncident }, refresh);

  // ------------------------------------------------------------------------------------------------ actions

  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (json) {
        if (!r.ok) {
          var detail = json.detail;
          if (Array.isArray(detail) && detail.length && detail[0].msg) detail = detail[0].msg;
          throw new Error(typeof detail === 'string' ? detail : 'HTTP ' + r.status);
        }
        return json;
      });
    });
  }

  function showError(text) {
    var box = document.getElementById('ack-error');
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  document.addEventListener('click', function (ev) {
    var button = ev.target.closest('[data-ack]');
    if (!button) return;
    var id = button.getAttribute('data-ack');
    button.disabled = true;
    showError('');
    post('/api/v1/incidents/' + encodeURIComponent(id) + '/ack', {})
      .then(function () { V.announce(tx('acknowledged')); refresh(); })
      .catch(function (err) {
        button.disabled = false;
        showError(tx('ack_failed', { reason: err.message }));
      });
  });

  var noteForm = document.getElementById('note-form');
  if (noteForm) {
    noteForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var area = noteForm.querySelector('textarea');
      var status = document.getElementById('note-status');
      var button = noteForm.querySelector('button[type=submit]');
      var text = area.value.trim();
      if (!text) return;
      button.disabled = true;
      post('/api/v1/incidents/' + encodeURIComponent(noteForm.getAttribute('data-incident-id')) + '/notes', { text: text })
        .then(function () {
          area.value = '';
          status.textContent = tx('note_added');
          refresh();
        })
        .catch(function (err) { status.textContent = tx('note_failed', { reason: err.message }); })
        .then(function () { button.disabled = false; });
    });
  }
})();
