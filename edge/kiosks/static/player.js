/* Varta kiosk player: plays the node's playlist, yields to touch, shows alerts the moment the node decides them.
   State arrives as server-sent events from the node (/player/events); heartbeats go back every few seconds. */
(function () {
  'use strict';

  var stage = document.getElementById('stage');
  var alertBox = document.getElementById('alert');
  var blank = document.getElementById('blank');
  var pageStartedAt = new Date().toISOString();
  var state = null;          // the node's latest PlayerState
  var itemsKey = '';         // the playlist we are playing (JSON of its items)
  var index = -1;            // the item on screen
  var timer = null;          // advances to the next item
  var idleTimer = null;      // returns from touch to the loop
  var touching = false;
  var lastTouchAt = null;
  var errors = [];
  var heartbeatTimer = null;
  var played = [];           // proof of play: items that finished since the last heartbeat
  var itemStartedAt = null;

  function noteError(text) {
    errors.push(String(text).slice(0, 300));
    if (errors.length > 20) { errors.shift(); }
  }
  window.addEventListener('error', function (e) { noteError('page: ' + (e.message || 'error')); });

  function post(path, body) {
    return fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      keepalive: true
    }).catch(function () { /* the node may be restarting: the next beat tries again */ });
  }

  function heartbeat() {
    if (!state) { return; }
    var item = (state.mode === 'playlist' && index >= 0) ? state.items[index] : null;
    var sent = errors.splice(0, errors.length);
    var plays = played.splice(0, played.length);
    post('/player/heartbeat', {
      generation: state.generation,
      mode: state.mode,
      item_index: item ? index : null,
      item_src: item ? item.src : null,
      touching: touching,
      last_touch_at: lastTouchAt,
      errors: sent,
      played: plays,
      page_started_at: pageStartedAt
    });
  }

  function scheduleHeartbeat() {
    if (heartbeatTimer) { clearInterval(heartbeatTimer); }
    var every = state ? state.heartbeat_interval_s * 1000 : 5000;
    heartbeatTimer = setInterval(heartbeat, every);
  }

  function endItem() {
    if (itemStartedAt !== null && state && index >= 0 && state.items[index]) {
      played.push({ src: state.items[index].src, kind: state.items[index].kind,
                    started_at: itemStartedAt, ended_at: new Date().toISOString() });
      if (played.length > 50) { played.shift(); }
    }
    itemStartedAt = null;
  }

  function clearStage() {
    endItem();
    if (timer) { clearTimeout(timer); timer = null; }
    while (stage.firstChild) {
      var el = stage.firstChild;
      if (el.tagName === 'VIDEO') { el.pause(); el.removeAttribute('src'); el.load(); }
      stage.removeChild(el);
    }
  }

  function advanceAfter(seconds) {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(next, Math.max(1, seconds) * 1000);
  }

  function show(i) {
    clearStage();
    var items = state.items;
    if (!items.length) { return; }
    index = i % items.length;
    var item = items[index];
    var el;
    if (item.kind === 'image') {
      el = document.createElement('img');
      el.alt = item.title || '';
      el.onerror = function () { noteError('image failed: ' + item.src); advanceAfter(1); };
      advanceAfter(item.duration_s || 10);
    } else if (item.kind === 'video') {
      el = document.createElement('video');
      el.muted = true;
      el.autoplay = true;
      el.playsInline = true;
      el.onended = function () { if (!touching) { next(); } };
      el.onerror = function () { noteError('video failed: ' + item.src); advanceAfter(1); };
      if (item.duration_s) { advanceAfter(item.duration_s); }
    } else {
      el = document.createElement('iframe');
      // Bundles run without the player's origin: they cannot reach the node's API or this page.
      el.setAttribute('sandbox', item.kind === 'bundle' ? 'allow-scripts' : 'allow-scripts allow-same-origin allow-forms');
      el.setAttribute('referrerpolicy', 'no-referrer');
      advanceAfter(item.duration_s || 30);
    }
    el.dataset.kind = item.kind;
    el.dataset.index = String(index);
    el.src = item.src;
    stage.appendChild(el);
    itemStartedAt = new Date().toISOString();
    document.body.dataset.item = String(index);
    document.body.dataset.itemKind = item.kind;
  }

  function next() {
    if (!state || state.mode !== 'playlist' || touching) { return; }
    show(index + 1);
  }

  function touched() {
    if (!state || state.mode !== 'playlist') { return; }  // during an alert touches change nothing
    touching = true;
    lastTouchAt = new Date().toISOString();
    document.body.dataset.touching = '1';
    if (timer) { clearTimeout(timer); timer = null; }
    if (idleTimer) { clearTimeout(idleTimer); }
    idleTimer = setTimeout(function () {
      touching = false;
      delete document.body.dataset.touching;
      next();
    }, state.idle_return_s * 1000);
  }
  document.addEventListener('pointerdown', touched, true);
  document.addEventListener('keydown', touched, true);
  // A touch inside a frame never reaches this page: the frame taking focus is how we notice it.
  window.addEventListener('blur', function () { setTimeout(touched, 0); });

  function text(id, value) { document.getElementById(id).textContent = value || ''; }

  function showAlert(a) {
    clearStage();
    touching = false;
    if (idleTimer) { clearTimeout(idleTimer); idleTimer = null; }
    var s = a.shelter || {};
    text('shelter-name', s.name || 'Найближче укриття');
    text('shelter-address', s.address);
    text('shelter-distance', s.distance_m != null ? s.distance_m + ' м пішки · ' + s.distance_m + ' m walk' : '');
    text('shelter-directions', s.directions);
    text('shelter-en', [s.name_en, s.directions_en].filter(Boolean).join(' — '));
    var since = new Date(a.started_at);
    text('alert-since', since.toLocaleTimeString('uk-UA', { hour: '2-digit', minute: '2-digit' }));
    text('alert-region', a.region ? ' · ' + a.region : '');
    document.getElementById('drill').hidden = !a.drill;
    alertBox.hidden = false;
    blank.hidden = true;
    if (document.activeElement && document.activeElement.blur) { document.activeElement.blur(); }
  }

  function tickClock() {
    text('blank-clock', new Date().toLocaleTimeString('uk-UA', { hour: '2-digit', minute: '2-digit' }));
  }
  setInterval(tickClock, 1000);
  tickClock();

  function reportShown() {
    var shown = state;
    // Two frames later the new screen has been painted.
    requestAnimationFrame(function () {
      requestAnimationFrame(function () {
        post('/player/shown', {
          generation: shown.generation,
          mode: shown.mode,
          alert_id: shown.alert ? shown.alert.alert_id : null
        });
      });
    });
  }

  function apply(newState) {
    var previous = state;
    state = newState;
    document.body.dataset.mode = state.mode;
    document.body.dataset.generation = String(state.generation);
    if (!previous || previous.heartbeat_interval_s !== state.heartbeat_interval_s) { scheduleHeartbeat(); }
    if (state.mode === 'alert') {
      itemsKey = '';
      showAlert(state.alert);
    } else if (state.mode === 'blank') {
      clearStage();
      itemsKey = '';
      index = -1;
      alertBox.hidden = true;
      blank.hidden = false;
    } else {
      alertBox.hidden = true;
      blank.hidden = true;
      var key = JSON.stringify(state.items);
      if (key !== itemsKey) {   // new playlist, or back from an alert: a fresh session from the first item
        itemsKey = key;
        touching = false;
        show(0);
      }
    }
    reportShown();
    heartbeat();
  }

  var source = new EventSource('/player/events');
  source.addEventListener('state', function (e) {
    try { apply(JSON.parse(e.data)); } catch (err) { noteError('state: ' + err); }
  });
})();
