/* Fleet page: keeps every node card current from the live stream, without reloading the page. */
(function () {
  'use strict';
  var V = window.Varta;
  var data = V.readJson('page-data') || {};
  var thresholds = data.thresholds || {};
  var devices = data.devices || {}; // node_id -> {device_id: status}
  var fleet = document.getElementById('fleet');
  var STATUSES = ['offline', 'degraded', 'online', 'unknown'];

  function cardOf(nodeId) {
    return fleet.querySelector('.node[data-node-id="' + CSS.escape(nodeId) + '"]');
  }
  function field(root, name) { return root.querySelector('[data-field="' + name + '"]'); }
  function setText(root, name, text) { var el = field(root, name); if (el) el.textContent = text; }

  function fmt(value) { return value === null || value === undefined ? '—' : String(Math.round(value)); }

  function setMetric(card, name, value, limit) {
    var el = field(card, name);
    if (!el) return;
    el.textContent = fmt(value);
    var box = el.closest('.metric');
    if (box) box.classList.toggle('is-warn', value !== null && value !== undefined && value > limit);
  }

  function applyHealth(card, h) {
    setMetric(card, 'cpu', h ? h.cpu_percent : null, thresholds.cpu);
    setMetric(card, 'memory', h ? h.memory_percent : null, thresholds.memory);
    setMetric(card, 'disk', h ? h.disk_percent : null, thresholds.disk);
    setMetric(card, 'temperature', h ? h.temperature_c : null, thresholds.temperature);
    var uv = field(card, 'undervoltage');
    if (uv) uv.hidden = !(h && h.undervoltage);
  }

  function applyDeviceCounts(card, nodeId) {
    var counts = { offline: 0, degraded: 0, online: 0, unknown: 0 };
    var map = devices[nodeId] || {};
    Object.keys(map).forEach(function (id) {
      var s = counts.hasOwnProperty(map[id]) ? map[id] : 'unknown';
      counts[s] += 1;
    });
    STATUSES.forEach(function (s) {
      var el = field(card, 'dev-' + s);
      if (!el) return;
      el.textContent = String(counts[s]);
      el.closest('.devcount').classList.toggle('is-zero', counts[s] === 0);
    });
  }

  function reasonText(reason) {
    return reason ? V.t('reason_' + reason) : '';
  }

  function siteSection(site) {
    var section = fleet.querySelector('.site[data-site="' + CSS.escape(site) + '"]');
    if (section) return section;
    var tpl = document.getElementById('site-template');
    section = tpl.content.firstElementChild.cloneNode(true);
    section.setAttribute('data-site', site);
    setText(section, 'site-name', site);
    fleet.insertBefore(section, document.getElementById('fleet-empty'));
    document.getElementById('fleet-empty').hidden = true;
    return section;
  }

  /** Sites share rows on a wide screen: a site is as wide as its number of nodes needs. */
  function sizeSite(section) {
    var n = section.querySelectorAll('.node').length;
    section.classList.remove('site--n1', 'site--n2', 'site--n3', 'site--many');
    section.classList.add(n < 4 ? 'site--n' + Math.max(1, n) : 'site--many');
  }

  function createCard(view) {
    var tpl = document.getElementById('node-template');
    var card = tpl.content.firstElementChild.cloneNode(true);
    card.setAttribute('data-node-id', view.node_id);
    var title = card.querySelector('.node__title');
    title.id = 'node-title-' + view.node_id;
    card.setAttribute('aria-labelledby', title.id);
    var section = siteSection(view.site);
    section.querySelector('.site__nodes').appendChild(card);
    sizeSite(section);
    return card;
  }

  function nodeName(card) { return (field(card, 'name') || {}).textContent || card.getAttribute('data-node-id'); }

  /** Offline first, then by name: in each site, and sites with offline nodes first. */
  function sortFleet() {
    var sections = Array.prototype.slice.call(fleet.querySelectorAll('.site'));
    sections.forEach(function (section) {
      var box = section.querySelector('.site__nodes');
      var cards = Array.prototype.slice.call(box.children);
      cards.sort(function (a, b) {
        var ao = a.getAttribute('data-online') === 'true', bo = b.getAttribute('data-online') === 'true';
        if (ao !== bo) return ao ? 1 : -1;
        return nodeName(a).localeCompare(nodeName(b));
      });
      cards.forEach(function (c) { box.appendChild(c); });
    });
    sections.sort(function (a, b) {
      var ab = a.querySelector('.node[data-online="false"]') ? 0 : 1;
      var bb = b.querySelector('.node[data-online="false"]') ? 0 : 1;
      if (ab !== bb) return ab - bb;
      return a.getAttribute('data-site').localeCompare(b.getAttribute('data-site'));
    });
    var empty = document.getElementById('fleet-empty');
    sections.forEach(function (s) { fleet.insertBefore(s, empty); });
  }

  function updateCounters() {
    var cards = fleet.querySelectorAll('.node');
    var online = 0, offline = 0, problems = 0;
    cards.forEach(function (c) { if (c.getAttribute('data-online') === 'true') online += 1; else offline += 1; });
    Object.keys(devices).forEach(function (n) {
      Object.keys(devices[n]).forEach(function (d) {
        if (devices[n][d] === 'offline' || devices[n][d] === 'degraded') problems += 1;
      });
    });
    var values = { online: online, offline: offline, nodes: cards.length, device_problems: problems };
    Object.keys(values).forEach(function (k) {
      var el = document.querySelector('[data-counter="' + k + '"]');
      if (el) el.textContent = String(values[k]);
    });
    var offBox = document.querySelector('[data-counter-box="offline"]');
    if (offBox) offBox.classList.toggle('is-alert', offline > 0);
    var devBox = document.querySelector('[data-counter-box="device_problems"]');
    if (devBox) devBox.classList.toggle('is-warn', problems > 0);
  }

  function flash(card) {
    card.classList.remove('is-changed');
    void card.offsetWidth; // restart the animation
    card.classList.add('is-changed');
  }

  /** Render a whole NodeView (SSE "node" event or a resync) into its card. */
  /** A node whose birth names another site moves there; a site left without nodes disappears. */
  function placeInSite(card, site) {
    var current = card.closest('.site');
    if (current && current.getAttribute('data-site') === site) return false;
    var target = siteSection(site);
    target.querySelector('.site__nodes').appendChild(card);
    sizeSite(target);
    if (current) {
      if (current.querySelector('.node')) sizeSite(current); else current.remove();
    }
    return true;
  }

  function applyNode(view) {
    var existing = cardOf(view.node_id);
    var card = existing || createCard(view);
    var moved = placeInSite(card, view.site);
    var wasOnline = card.getAttribute('data-online') === 'true';
    card.setAttribute('data-online', view.online ? 'true' : 'false');
    card.classList.toggle('is-online', view.online);
    card.classList.toggle('is-offline', !view.online);
    setText(card, 'name', view.name || view.node_id);
    setText(card, 'node-id', view.node_id);
    var link = field(card, 'link');
    if (link) link.setAttribute('href', '/nodes/' + encodeURIComponent(view.node_id));
    setText(card, 'status-text', view.online ? V.t('online') : V.t('offline'));
    var icon = card.querySelector('.badge__icon');
    if (icon) icon.textContent = view.online ? '●' : '✕';
    setText(card, 'reason', reasonText(view.online ? 'connected' : view.offline_reason));
    V.setAgo(field(card, 'since'), view.status_since);
    V.setAgo(field(card, 'last-seen'), view.last_seen);
    applyHealth(card, view.last_health);
    devices[view.node_id] = {};
    (view.devices || []).forEach(function (d) { devices[view.node_id][d.device_id] = d.status; });
    applyDeviceCounts(card, view.node_id);
    var label = (view.name || view.node_id) + ': ' + (view.online ? V.t('online') : V.t('offline'));
    if (!existing) {
      flash(card);
      V.announce(V.t('new_node') + ' — ' + label);
    } else if (wasOnline !== view.online) {
      flash(card);
      V.announce(label);
    }
    if (!existing || moved || wasOnline !== view.online) sortFleet();
    updateCounters();
  }

  function onHealth(msg) {
    var card = cardOf(msg.node_id);
    if (!card || !msg.point || msg.point.historical) return; // a replayed sample is not the current state
    applyHealth(card, msg.point);
    V.setAgo(field(card, 'last-seen'), new Date(V.now()).toISOString());
  }

  function onDevice(msg) {
    var card = cardOf(msg.node_id);
    if (!card || !msg.device) return;
    devices[msg.node_id] = devices[msg.node_id] || {};
    devices[msg.node_id][msg.device.device_id] = msg.device.status;
    applyDeviceCounts(card, msg.node_id);
    updateCounters();
  }

  function resync() {
    V.fetchJson('/api/v1/nodes').then(function (list) { list.forEach(applyNode); }).catch(function () {});
  }

  V.connectLive({ node: applyNode, health: onHealth, device: onDevice }, resync);
})();
