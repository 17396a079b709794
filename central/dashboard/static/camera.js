/* Camera page: live status and picture, PTZ pad (hold = move, release = stop), presets, snapshot, actions. */
(function () {
  'use strict';
  var V = window.Varta;
  var data = V.readJson('page-data') || {};
  var nodeId = data.node_id;
  var deviceId = data.device_id;
  var maxEvents = data.max_events || 50;
  var page = document.getElementById('camera');
  var base = '/api/v1/cameras/' + encodeURIComponent(nodeId) + '/' + encodeURIComponent(deviceId);

  function field(name) { return page.querySelector('[data-field="' + name + '"]'); }
  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function say(id, text) { var e = document.getElementById(id); if (e) e.textContent = text; }

  // Commands go out one after another: a stop never overtakes the move it ends.
  var queue = Promise.resolve();
  // request_id → where to show the node's answer (errors only: "Sent." stays otherwise).
  var pending = {};
  function post(path, body, resultId) {
    queue = queue.then(function () {
      return fetch(base + path, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body || {})
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (json) {
          if (!r.ok) throw new Error(typeof json.detail === 'string' ? json.detail : 'HTTP ' + r.status);
          if (resultId) {
            say(resultId, V.t('cam_sent'));
            if (json.request_id) pending[json.request_id] = resultId;
          }
          return json;
        });
      }).catch(function (err) {
        if (resultId) say(resultId, V.t('cam_failed', { reason: err.message }));
      });
    });
    return queue;
  }

  // ------------------------------------------------------------------ PTZ: press and hold
  var moving = null;
  var repeat = null;
  function startMove(btn) {
    if (moving) return;
    moving = btn;
    btn.classList.add('is-pressed');
    var body = {
      pan: Number(btn.getAttribute('data-pan')),
      tilt: Number(btn.getAttribute('data-tilt')),
      zoom: Number(btn.getAttribute('data-zoom')),
      timeout_s: 2
    };
    post('/ptz/move', body, 'ptz-result');
    // The camera stops by itself after timeout_s: while the button is held, renew the move.
    repeat = window.setInterval(function () { post('/ptz/move', body); }, 1500);
  }
  function stopMove() {
    if (!moving) return;
    moving.classList.remove('is-pressed');
    moving = null;
    window.clearInterval(repeat);
    post('/ptz/stop', {}, 'ptz-result');
  }
  var pad = document.getElementById('ptz');
  if (pad) {
    pad.querySelectorAll('.ptz__btn').forEach(function (btn) {
      btn.addEventListener('pointerdown', function (ev) {
        ev.preventDefault();
        if (btn.setPointerCapture) { try { btn.setPointerCapture(ev.pointerId); } catch (e) { /* ignore */ } }
        startMove(btn);
      });
      btn.addEventListener('pointerup', stopMove);
      btn.addEventListener('pointercancel', stopMove);
      btn.addEventListener('lostpointercapture', stopMove);
      btn.addEventListener('keydown', function (ev) {
        if ((ev.key === ' ' || ev.key === 'Enter') && !ev.repeat) { ev.preventDefault(); startMove(btn); }
      });
      btn.addEventListener('keyup', function (ev) { if (ev.key === ' ' || ev.key === 'Enter') stopMove(); });
      btn.addEventListener('blur', stopMove);
      btn.addEventListener('contextmenu', function (ev) { ev.preventDefault(); });
    });
    window.addEventListener('blur', stopMove);
  }

  page.querySelectorAll('[data-preset]').forEach(function (btn) {
    btn.addEventListener('click', function () {
      post('/ptz/presets/goto', { token: btn.getAttribute('data-preset') }, 'ptz-result');
    });
  });
  var presetForm = document.getElementById('preset-form');
  if (presetForm) {
    presetForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      post('/ptz/presets', { name: presetForm.elements.name.value }, 'ptz-result');
    });
  }
  var snapBtn = document.getElementById('snapshot-btn');
  if (snapBtn) snapBtn.addEventListener('click', function () { post('/snapshot', {}, 'snapshot-result'); });
  page.querySelectorAll('[data-action]').forEach(function (btn) {
    btn.addEventListener('click', function () {
      var confirmText = btn.getAttribute('data-confirm-text');
      if (confirmText && !window.confirm(confirmText)) return;
      post('/' + btn.getAttribute('data-action'), {}, 'action-result');
    });
  });

  // ------------------------------------------------------------------ live video (main stream)
  var liveBox = document.getElementById('liveview');
  var player = liveBox && V.LivePlayer && window.RTCPeerConnection ?
    new V.LivePlayer(liveBox, { nodeId: nodeId, deviceId: deviceId, stream: 'main' }) : null;
  function showOffline(cam) {
    var offline = cam.status === 'offline';
    field('offline-poster').hidden = !offline;
    field('offline-reason').textContent = cam.reason ? V.t('camreason_' + cam.reason) : '';
  }
  if (player && page.getAttribute('data-status') !== 'offline') player.start();

  // ------------------------------------------------------------------ live status
  function applyCamera(cam) {
    if (cam.node_id !== nodeId || cam.device_id !== deviceId) return;
    var before = page.getAttribute('data-status');
    page.setAttribute('data-status', cam.status);
    page.className = 'campage cam--' + cam.status;
    var badge = field('status');
    badge.className = 'badge badge--big badge--' + cam.status;
    badge.textContent = V.t('status_' + cam.status);
    field('reason').textContent = cam.reason ? V.t('camreason_' + cam.reason) : '';
    field('detail').textContent = cam.detail || '';
    field('name').textContent = cam.name;
    V.setAgo(field('since'), cam.status_since);
    field('node-offline').hidden = !!cam.node_online;
    if (cam.snapshot_at) {
      var img = field('img');
      var src = base + '/snapshot?v=' + encodeURIComponent(cam.snapshot_at);
      if (img.getAttribute('src') !== src) img.setAttribute('src', src);
      img.hidden = false;
      field('nopic').hidden = true;
      V.setAgo(field('age'), cam.snapshot_at);
    }
    showOffline(cam);
    if (before !== cam.status) {
      V.announce(cam.name + ': ' + V.t('status_' + cam.status));
      addChange(cam);
      // Back from offline: start the video again unless the dispatcher stopped it.
      if (player && before === 'offline' && cam.status !== 'offline' && !player.stoppedByUser &&
          player.state !== 'playing' && player.state !== 'connecting') player.start();
    }
  }

  function addChange(cam) {
    var body = document.getElementById('changes');
    var tr = el('tr', 'status-' + cam.status + ' is-new');
    var when = el('td');
    var iso = cam.status_since || new Date(V.now()).toISOString();
    var time = el('time', null, V.localTime(iso));
    time.setAttribute('data-local', ''); time.setAttribute('datetime', iso);
    when.appendChild(time); tr.appendChild(when);
    var st = el('td'); st.appendChild(el('span', 'badge badge--' + cam.status, V.t('status_' + cam.status)));
    tr.appendChild(st);
    tr.appendChild(el('td', null, cam.reason ? V.t('camreason_' + cam.reason) : ''));
    body.insertBefore(tr, body.firstChild);
    var empty = document.getElementById('changes-empty');
    if (empty) empty.hidden = true;
  }

  function addEvent(e) {
    if (e.node_id !== nodeId || e.device_id !== deviceId) return;
    var body = document.getElementById('events');
    if (body.querySelector('tr[data-event-id="' + e.id + '"]')) return;
    var tr = el('tr', 'sev-' + e.severity + ' is-new');
    tr.setAttribute('data-event-id', String(e.id));
    var when = el('td');
    var time = el('time', null, V.localTime(e.ts));
    time.setAttribute('data-local', ''); time.setAttribute('datetime', e.ts);
    when.appendChild(time); tr.appendChild(when);
    var sev = el('td'); sev.appendChild(el('span', 'badge badge--' + e.severity, V.t('severity_' + e.severity)));
    tr.appendChild(sev);
    var kind = el('td'); kind.appendChild(el('code', null, e.kind)); tr.appendChild(kind);
    tr.appendChild(el('td', null, e.message || ''));
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > maxEvents) body.removeChild(body.lastElementChild);
    document.getElementById('events-empty').hidden = true;
  }

  function resync() { V.fetchJson(base).then(applyCamera).catch(function () {}); }

  function applyResult(r) {
    var target = pending[r.request_id];
    if (!target) return;
    delete pending[r.request_id];
    if (r.status !== 'ok') say(target, V.t('cam_failed', { reason: r.detail || r.reason || r.status }));
  }

  V.connectLive({
    camera: applyCamera,
    event: addEvent,
    command_result: applyResult,
    live_ended: function (notice) { if (V.liveEnded) V.liveEnded(notice); },
    node: function (view) {
      if (view.node_id === nodeId) field('node-offline').hidden = !!view.online;
    }
  }, resync);
})();
