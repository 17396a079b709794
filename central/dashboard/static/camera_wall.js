/* Camera wall: tiles follow camera status, reason and picture live over SSE; what is down comes first. */
(function () {
  'use strict';
  var V = window.Varta;
  var data = V.readJson('page-data') || {};
  var site = data.site || null;
  var staleAfter = (data.stale_after_s || 900) * 1000;
  var wall = document.getElementById('wall');
  var ORDER = { offline: 0, degraded: 1, unknown: 2, online: 3 };

  function tileOf(cam) {
    return wall.querySelector('.cam[data-node-id="' + CSS.escape(cam.node_id) + '"][data-device-id="' +
      CSS.escape(cam.device_id) + '"]');
  }
  function field(tile, name) { return tile.querySelector('[data-field="' + name + '"]'); }
  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function snapshotUrl(cam) {
    return '/api/v1/cameras/' + encodeURIComponent(cam.node_id) + '/' + encodeURIComponent(cam.device_id) +
      '/snapshot?v=' + encodeURIComponent(cam.snapshot_at || '');
  }
  function reasonText(code) { return code ? V.t('camreason_' + code) : ''; }

  function newTile(cam) {
    var art = el('article', 'cam');
    art.setAttribute('data-node-id', cam.node_id);
    art.setAttribute('data-device-id', cam.device_id);
    var a = el('a', 'cam__link');
    a.href = '/cameras/' + encodeURIComponent(cam.node_id) + '/' + encodeURIComponent(cam.device_id);
    var pic = el('div', 'cam__pic');
    var img = el('img'); img.alt = ''; img.setAttribute('data-field', 'img'); img.hidden = true;
    var nopic = el('span', 'cam__nopic', V.t('cam_no_picture')); nopic.setAttribute('data-field', 'nopic');
    var badge = el('span', 'cam__badge badge'); badge.setAttribute('data-field', 'status');
    pic.appendChild(img); pic.appendChild(nopic); pic.appendChild(badge);
    var body = el('div', 'cam__body');
    var name = el('h3', 'cam__name'); name.setAttribute('data-field', 'name');
    var reason = el('p', 'cam__reason'); reason.setAttribute('data-field', 'reason');
    var meta = el('p', 'cam__meta');
    meta.appendChild(el('span', 'cam__where', cam.position || cam.site));
    meta.appendChild(document.createTextNode(' · '));
    var ageBox = el('span', 'cam__age', V.t('cam_picture') + ' '); ageBox.setAttribute('data-field', 'age-box');
    var age = el('time'); age.setAttribute('data-ago', ''); age.setAttribute('data-field', 'age');
    ageBox.appendChild(age); meta.appendChild(ageBox);
    var nodeOff = el('p', 'cam__nodeoff', V.t('cam_node_offline')); nodeOff.setAttribute('data-field', 'node-offline');
    body.appendChild(name); body.appendChild(reason); body.appendChild(meta); body.appendChild(nodeOff);
    a.appendChild(pic); a.appendChild(body); art.appendChild(a);
    return art;
  }

  function applyTile(tile, cam) {
    var before = tile.getAttribute('data-status');
    tile.setAttribute('data-status', cam.status);
    tile.className = 'cam cam--' + cam.status + (cam.node_online ? '' : ' is-node-offline');
    var badge = field(tile, 'status');
    badge.className = 'cam__badge badge badge--' + cam.status;
    badge.textContent = V.t('status_' + cam.status);
    field(tile, 'name').textContent = cam.name;
    var reason = field(tile, 'reason');
    reason.textContent = reasonText(cam.reason);
    reason.hidden = !cam.reason;
    var img = field(tile, 'img');
    if (cam.snapshot_at) {
      var src = snapshotUrl(cam);
      if (img.getAttribute('src') !== src) img.setAttribute('src', src);
      img.hidden = false;
      field(tile, 'nopic').hidden = true;
    }
    tile.setAttribute('data-snapshot-at', cam.snapshot_at || '');
    V.setAgo(field(tile, 'age'), cam.snapshot_at);
    markStale(tile);
    field(tile, 'node-offline').hidden = !!cam.node_online;
    tile.querySelector('.cam__link').setAttribute('aria-label', cam.name + ': ' + V.t('status_' + cam.status));
    if (before && before !== cam.status) {
      tile.classList.add('is-changed');
      V.announce(cam.name + ': ' + V.t('status_' + cam.status) + (cam.reason ? ', ' + reasonText(cam.reason) : ''));
    }
  }

  function markStale(tile) {
    var box = field(tile, 'age-box');
    var iso = field(tile, 'age').getAttribute('datetime');
    var t = iso ? Date.parse(iso) : NaN;
    box.classList.toggle('is-stale', !isNaN(t) && V.now() - t > staleAfter);
  }

  function place(tile) {
    var rank = ORDER[tile.getAttribute('data-status')];
    if (rank === undefined) rank = 2;
    var tiles = wall.querySelectorAll('.cam');
    for (var i = 0; i < tiles.length; i += 1) {
      if (tiles[i] === tile) continue;
      var other = ORDER[tiles[i].getAttribute('data-status')];
      if (other === undefined) other = 2;
      if (other > rank) { wall.insertBefore(tile, tiles[i]); return; }
    }
    wall.appendChild(tile);
  }

  function recount() {
    var counts = { offline: 0, degraded: 0, online: 0, unknown: 0 };
    wall.querySelectorAll('.cam').forEach(function (t) {
      var s = t.getAttribute('data-status');
      counts[s] = (counts[s] || 0) + 1;
    });
    Object.keys(counts).forEach(function (s) {
      var n = document.querySelector('[data-counter="' + s + '"]');
      if (n) {
        n.textContent = String(counts[s]);
        n.closest('.summary__item').classList.toggle('is-zero', counts[s] === 0);
      }
    });
    document.getElementById('wall-empty').hidden = counts.offline + counts.degraded + counts.online + counts.unknown > 0;
  }

  function applyCamera(cam) {
    if (site && cam.site !== site) return;
    var tile = tileOf(cam);
    var oldStatus = tile ? tile.getAttribute('data-status') : null;
    if (!tile) { tile = newTile(cam); }
    applyTile(tile, cam);
    // Live layouts keep their order: tiles jumping around under running videos would be unwatchable.
    if (!tile.parentNode) { if (layout) wall.appendChild(tile); else place(tile); }
    else if (oldStatus !== cam.status && !layout) place(tile);
    recount();
    if (layout) {
      if (oldStatus === 'offline' && cam.status !== 'offline') { stopTile(tile); }
      showPage();
    }
  }

  // ------------------------------------------------------------------ live layouts: 1, 4 or 9 sub-streams
  var layout = 0;
  var pageNo = 0;
  var pager = document.getElementById('wallpager');
  var canPlay = !!(V.LivePlayer && window.RTCPeerConnection);

  function tiles() { return Array.prototype.slice.call(wall.querySelectorAll('.cam')); }
  function stopTile(tile) { if (tile.livePlayer) tile.livePlayer.stop(); }
  function startTile(tile) {
    if (!tile.livePlayer) {
      tile.livePlayer = new V.LivePlayer(field(tile, 'img').parentNode, {
        nodeId: tile.getAttribute('data-node-id'),
        deviceId: tile.getAttribute('data-device-id'),
        stream: 'sub'
      });
    }
    var p = tile.livePlayer;
    if (tile.getAttribute('data-status') !== 'offline' && !p.stoppedByUser && (p.state === 'idle' || !p.wanted)) {
      p.start();
    }
  }

  function showPage() {
    var all = tiles();
    var pages = Math.max(1, Math.ceil(all.length / (layout || 1)));
    pageNo = Math.min(Math.max(0, pageNo), pages - 1);
    all.forEach(function (tile, i) {
      var visible = !layout || (i >= pageNo * layout && i < (pageNo + 1) * layout);
      tile.hidden = !visible;
      if (layout && visible && canPlay) startTile(tile); else stopTile(tile);
    });
    pager.hidden = !layout || pages < 2;
    field(pager, 'page').textContent = V.t('wall_page', { page: pageNo + 1, pages: pages });
  }

  function setLayout(n, page) {
    layout = n;
    pageNo = page || 0;
    wall.classList.toggle('wall--live', !!n);
    [1, 4, 9].forEach(function (k) { wall.classList.toggle('wall--live-' + k, n === k); });
    document.querySelectorAll('[data-layout]').forEach(function (b) {
      b.setAttribute('aria-pressed', String(Number(b.getAttribute('data-layout')) === n));
    });
    if (!n) tiles().forEach(function (tile) { stopTile(tile); place(tile); });
    showPage();
    var params = new URLSearchParams(window.location.search);
    if (n) { params.set('live', String(n)); params.set('page', String(pageNo + 1)); }
    else { params.delete('live'); params.delete('page'); }
    var query = params.toString();
    window.history.replaceState(null, '', window.location.pathname + (query ? '?' + query : ''));
    try { window.localStorage.setItem('varta.wall.layout', String(n)); } catch (e) { /* private mode */ }
  }

  document.querySelectorAll('[data-layout]').forEach(function (b) {
    b.addEventListener('click', function () { setLayout(Number(b.getAttribute('data-layout')), 0); });
  });
  pager.querySelectorAll('[data-step]').forEach(function (b) {
    b.addEventListener('click', function () {
      pageNo += Number(b.getAttribute('data-step'));
      setLayout(layout, pageNo);
    });
  });
  // A wall screen left alone: stop the videos while the tab is hidden, start them again when it is shown.
  document.addEventListener('visibilitychange', function () {
    if (!layout) return;
    if (document.hidden) tiles().forEach(stopTile); else showPage();
  });

  function resync() {
    V.fetchJson('/api/v1/cameras' + (site ? '?site=' + encodeURIComponent(site) : ''))
      .then(function (list) { list.forEach(applyCamera); })
      .catch(function () {});
  }

  wall.querySelectorAll('.cam').forEach(function (tile) {
    tile.setAttribute('data-snapshot-at', (field(tile, 'age').getAttribute('datetime')) || '');
  });
  recount();
  window.setInterval(function () { wall.querySelectorAll('.cam').forEach(markStale); }, 15000);

  (function initialLayout() {
    var params = new URLSearchParams(window.location.search);
    var n = Number(params.get('live'));
    if (!params.has('live')) {
      try { n = Number(window.localStorage.getItem('varta.wall.layout')) || 0; } catch (e) { n = 0; }
    }
    if ([1, 4, 9].indexOf(n) < 0 || !canPlay) n = 0;
    setLayout(n, Math.max(0, (Number(params.get('page')) || 1) - 1));
  })();

  V.connectLive({
    live_ended: function (notice) { if (V.liveEnded) V.liveEnded(notice); },
    camera: applyCamera,
    node: function (view) {
      // A node going offline makes its cameras' status stale: show it at once.
      wall.querySelectorAll('.cam[data-node-id="' + CSS.escape(view.node_id) + '"]').forEach(function (tile) {
        tile.classList.toggle('is-node-offline', !view.online);
        field(tile, 'node-offline').hidden = !!view.online;
      });
    }
  }, resync);
})();
