/* Node page: live status, health, devices and events of one node, without reloading the page. */
(function () {
  'use strict';
  var V = window.Varta;
  var data = V.readJson('page-data') || {};
  var nodeId = data.node_id;
  var thresholds = data.thresholds || {};
  var maxEvents = data.max_events || 100;
  var page = document.getElementById('node');
  var devicesBody = document.getElementById('devices');
  var eventsBody = document.getElementById('events');

  function field(name) { return page.querySelector('[data-field="' + name + '"]'); }
  function setText(name, text) { var el = field(name); if (el) el.textContent = text; }
  function fmt(value, digits) {
    return value === null || value === undefined ? '—' : Number(value).toFixed(digits || 0);
  }
  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function badge(kind, text) { return el('span', 'badge badge--' + kind, text); }

  function setMetric(name, value, limit) {
    var e = field(name);
    if (!e) return;
    e.textContent = fmt(value);
    var box = e.closest('.metric');
    if (box) box.classList.toggle('is-warn', value !== null && value !== undefined && value > limit);
  }

  function uptime(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    var m = Math.floor(seconds / 60), d = Math.floor(m / 1440), h = Math.floor((m % 1440) / 60);
    m = m % 60;
    if (d) return V.t('duration_d', { d: d, h: h });
    if (h) return V.t('duration_h', { h: h, m: m });
    return V.t('duration_m', { m: m });
  }

  function applyHealth(h) {
    setMetric('cpu', h ? h.cpu_percent : null, thresholds.cpu);
    setMetric('memory', h ? h.memory_percent : null, thresholds.memory);
    setMetric('disk', h ? h.disk_percent : null, thresholds.disk);
    setMetric('temperature', h ? h.temperature_c : null, thresholds.temperature);
    var uv = field('undervoltage');
    if (uv) uv.hidden = !(h && h.undervoltage);
    V.setAgo(field('health-ts'), h ? h.ts : null);
    setText('uptime', uptime(h ? h.uptime_s : null));
  }

  function deviceRow(d) {
    var tr = el('tr', 'status-' + d.status);
    tr.setAttribute('data-device-id', d.device_id);
    var name = el('td');
    var strong = el('strong');
    if (d.kind === 'camera') {
      var link = el('a', null, d.name || d.device_id);
      link.href = '/cameras/' + encodeURIComponent(nodeId) + '/' + encodeURIComponent(d.device_id);
      strong.appendChild(link);
    } else {
      strong.textContent = d.name || d.device_id;
    }
    name.appendChild(strong);
    name.appendChild(el('br'));
    name.appendChild(el('code', null, d.device_id));
    tr.appendChild(name);
    tr.appendChild(el('td', null, d.kind));
    var st = el('td');
    st.appendChild(badge(d.status, V.t('status_' + d.status)));
    tr.appendChild(st);
    var detail = el('td');
    if (d.reason) { detail.appendChild(el('code', null, d.reason)); detail.appendChild(document.createTextNode(' ')); }
    detail.appendChild(document.createTextNode(d.detail || ''));
    tr.appendChild(detail);
    var since = el('td');
    var time = el('time');
    time.setAttribute('data-ago', '');
    V.setAgo(time, d.status_since);
    since.appendChild(time);
    tr.appendChild(since);
    return tr;
  }

  function upsertDevice(d) {
    var row = devicesBody.querySelector('tr[data-device-id="' + CSS.escape(d.device_id) + '"]');
    var fresh = deviceRow(d);
    if (row) {
      devicesBody.replaceChild(fresh, row);
    } else {
      devicesBody.appendChild(fresh);
    }
    document.getElementById('devices-empty').hidden = true;
  }

  function eventRow(e) {
    var tr = el('tr', 'sev-' + e.severity + ' is-new');
    tr.setAttribute('data-event-id', String(e.id));
    var when = el('td');
    var time = el('time', null, V.localTime(e.ts));
    time.setAttribute('data-local', '');
    time.setAttribute('datetime', e.ts);
    when.appendChild(time);
    if (e.historical) {
      when.appendChild(document.createTextNode(' '));
      when.appendChild(badge('historical', V.t('historical')));
    }
    tr.appendChild(when);
    var sev = el('td');
    sev.appendChild(badge(e.severity, V.t('severity_' + e.severity)));
    tr.appendChild(sev);
    var kind = el('td');
    kind.appendChild(el('code', null, e.kind));
    tr.appendChild(kind);
    tr.appendChild(el('td', null, e.device_id || ''));
    tr.appendChild(el('td', null, e.message || ''));
    return tr;
  }

  function addEvent(e) {
    if (e.node_id !== nodeId) return;
    if (eventsBody.querySelector('tr[data-event-id="' + e.id + '"]')) return;
    // Newest first by id (the order central stored them in).
    var rows = eventsBody.querySelectorAll('tr[data-event-id]');
    var before = null;
    for (var i = 0; i < rows.length; i += 1) {
      if (Number(rows[i].getAttribute('data-event-id')) < e.id) { before = rows[i]; break; }
    }
    eventsBody.insertBefore(eventRow(e), before);
    while (eventsBody.children.length > maxEvents) eventsBody.removeChild(eventsBody.lastElementChild);
    document.getElementById('events-empty').hidden = true;
  }

  function applyNode(view) {
    if (view.node_id !== nodeId) return;
    var wasOnline = page.getAttribute('data-online') === 'true';
    page.setAttribute('data-online', view.online ? 'true' : 'false');
    page.classList.toggle('is-online', view.online);
    page.classList.toggle('is-offline', !view.online);
    setText('name', view.name || view.node_id);
    setText('status-text', view.online ? V.t('online') : V.t('offline'));
    var icon = page.querySelector('.badge__icon');
    if (icon) icon.textContent = view.online ? '●' : '✕';
    var reason = view.online ? 'connected' : view.offline_reason;
    setText('reason', reason ? V.t('reason_' + reason) : '');
    V.setAgo(field('since'), view.status_since);
    V.setAgo(field('last-seen'), view.last_seen);
    setText('site', view.site);
    setText('hostname', view.hostname || '—');
    setText('version', view.version || '—');
    setText('boot-id', view.boot_id || '—');
    var started = field('started');
    if (started) {
      started.setAttribute('datetime', view.started_at || '');
      started.textContent = view.started_at ? V.localTime(view.started_at) : '—';
    }
    setText('health-interval', fmt(view.health_interval_s));
    if (view.last_health) applyHealth(view.last_health);
    (view.devices || []).forEach(upsertDevice);
    if (wasOnline !== view.online) {
      V.announce((view.name || view.node_id) + ': ' + (view.online ? V.t('online') : V.t('offline')));
    }
  }

  function resync() {
    V.fetchJson('/api/v1/nodes/' + encodeURIComponent(nodeId)).then(applyNode).catch(function () {});
    V.fetchJson('/api/v1/nodes/' + encodeURIComponent(nodeId) + '/events?limit=50')
      .then(function (list) { list.slice().reverse().forEach(addEvent); })
      .catch(function () {});
  }

  V.connectLive({
    node: applyNode,
    health: function (msg) {
      if (msg.node_id === nodeId && msg.point && !msg.point.historical) {
        applyHealth(msg.point);
        V.setAgo(field('last-seen'), new Date(V.now()).toISOString());
      }
    },
    device: function (msg) { if (msg.node_id === nodeId && msg.device) upsertDevice(msg.device); },
    event: addEvent
  }, resync);
})();
